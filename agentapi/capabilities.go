package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// The agent API beyond steps and secrets: suspending the attempt, child executions,
// configuration, brokered GitHub calls and earlier executions. Every request carries
// the attempt, like the rest of the API; 409 means the attempt must stop.

// Suspend ends the attempt without ending the run (POST /v1/agent/<exec>/suspend); the
// run waits for the first of Until, every one of Children ending, or Event.
type Suspend struct {
	Attempt  int       `json:"attempt"`
	Until    time.Time `json:"until,omitzero"`
	Children []string  `json:"children,omitempty"`
	Event    string    `json:"event,omitempty"`
}

// SpawnChildren starts child executions (POST /v1/agent/<exec>/children). The id of
// child k is <exec>:<k>; spawning an id that exists changes nothing.
type SpawnChildren struct {
	Attempt  int          `json:"attempt"`
	FailFast bool         `json:"failFast,omitempty"`
	Children []ChildStart `json:"children"`
}

// ChildStart is one child: its key among its siblings, its run and its inputs.
type ChildStart struct {
	Key    string          `json:"key"`
	Run    string          `json:"run"`
	Inputs json.RawMessage `json:"inputs"`
}

// Spawned answers SpawnChildren, in the order asked.
type Spawned struct {
	Children []SpawnedChild `json:"children"`
}

// SpawnedChild is one started (or already existing) child.
type SpawnedChild struct {
	Key     string `json:"key"`
	Exec    string `json:"executionId"`
	Status  string `json:"status"`
	Created bool   `json:"created"`
}

// ChildrenStatus answers POST /v1/agent/<exec>/children/status.
type ChildrenStatus struct {
	FailFast bool          `json:"failFast,omitempty"`
	Children []ChildStatus `json:"children"`
}

// ChildStatus is how one child is doing; Output and Failure once it ended.
type ChildStatus struct {
	Key         string          `json:"key"`
	Exec        string          `json:"executionId"`
	Run         string          `json:"run"`
	Status      string          `json:"status"`
	Output      json.RawMessage `json:"output,omitempty"`
	Failure     *Failure        `json:"failure,omitempty"`
	LogsURL     string          `json:"logsUrl,omitempty"`
	StartedAt   time.Time       `json:"startedAt,omitzero"`
	CompletedAt time.Time       `json:"completedAt,omitzero"`
}

// ConfigRequest reads CONFIG_KV keys (POST /v1/agent/<exec>/config); keys outside the
// run's namespaces are refused with 403.
type ConfigRequest struct {
	Attempt int      `json:"attempt"`
	Keys    []string `json:"keys"`
}

// ConfigValues answers ConfigRequest: the keys found.
type ConfigValues struct {
	Values map[string]string `json:"values"`
}

// RepoRequest names a repository (POST /v1/agent/<exec>/github/repository and
// /github/pulls).
type RepoRequest struct {
	Attempt int    `json:"attempt"`
	Repo    string `json:"repo"`
}

// Repository is what a run learns about a repository; it answers /github/repository.
type Repository struct {
	FullName      string `json:"fullName"`
	DefaultBranch string `json:"defaultBranch"`
	Private       bool   `json:"private"`
	HTMLURL       string `json:"htmlUrl,omitempty"`
}

// PullRequests answers /github/pulls: the open pull requests.
type PullRequests struct {
	Pulls []PullRequest `json:"pulls"`
}

// PullRequest is one open pull request.
type PullRequest struct {
	Number  int    `json:"number"`
	Title   string `json:"title"`
	Head    string `json:"head"`
	HeadSHA string `json:"headSha,omitempty"`
	Base    string `json:"base"`
	Draft   bool   `json:"draft,omitempty"`
	URL     string `json:"url,omitempty"`
	Author  string `json:"author,omitempty"`
}

// DraftPullRequest is a branch with files committed on top of a base branch and the
// (draft) pull request for it; an open pull request for the branch is updated. The run
// must declare it (Spec.Needs.PullRequests). dsl uses this type as it is.
type DraftPullRequest struct {
	Repo          string       `json:"repo"`
	BaseBranch    string       `json:"baseBranch,omitempty"` // "" = the default branch
	HeadBranch    string       `json:"headBranch"`
	Title         string       `json:"title"`
	Body          string       `json:"body,omitempty"`
	CommitMessage string       `json:"commitMessage"`
	Files         []FileChange `json:"files"`
}

// DraftRequest is the body of POST /v1/agent/<exec>/github/pull-request: the attempt
// and the DraftPullRequest's fields, flattened.
type DraftRequest struct {
	Attempt int `json:"attempt"`
	DraftPullRequest
}

// FileChange is one file of a pull request: its new content, or its deletion.
type FileChange struct {
	Path       string `json:"path"`
	Content    string `json:"content,omitempty"`
	Deleted    bool   `json:"deleted,omitempty"`
	Executable bool   `json:"executable,omitempty"`
}

// PullRequestResult is what opening a draft pull request did; it answers
// DraftRequest.
type PullRequestResult struct {
	Number    int    `json:"number,omitempty"`
	URL       string `json:"url,omitempty"`
	Created   bool   `json:"created"`
	Branch    string `json:"branch"`
	Commit    string `json:"commit,omitempty"`
	Files     int    `json:"files"`
	Deletions int    `json:"deletions"`
	Skipped   string `json:"skipped,omitempty"` // why nothing was pushed ("no files", …)
}

// GitHubError is the body of a 424 github_error: GitHub refused or failed a brokered
// call.
type GitHubError struct {
	Error        string `json:"error"` // github_error
	Message      string `json:"message"`
	Status       int    `json:"status"`
	Reason       string `json:"reason"` // rate-limited | unauthorized | transient | other
	RetryAfterMs int64  `json:"retryAfterMs,omitempty"`
}

// AsGitHubError extracts a GitHubError from an error the client returned.
func AsGitHubError(err error) (GitHubError, bool) {
	var se *StatusError
	if !errors.As(err, &se) || se.Body.Error != "github_error" {
		return GitHubError{}, false
	}
	var g GitHubError
	if json.Unmarshal(se.Raw, &g) != nil {
		return GitHubError{}, false
	}
	return g, true
}

// PriorRequest asks for the newest finished execution of a family (POST
// /v1/agent/<exec>/prior).
type PriorRequest struct {
	Attempt int    `json:"attempt"`
	Family  string `json:"family"`
}

// Prior answers PriorRequest.
type Prior struct {
	Found       bool            `json:"found"`
	Exec        string          `json:"executionId,omitempty"`
	Status      string          `json:"status,omitempty"`
	CompletedAt time.Time       `json:"completedAt,omitzero"`
	Output      json.RawMessage `json:"output,omitempty"`
}

// Suspend asks the run actor to suspend the run (see Suspend).
func (c *Client) Suspend(ctx context.Context, s Suspend) error {
	s.Attempt = c.Attempt
	return c.post(ctx, c.path("suspend"), s, nil)
}

// SpawnChildren starts child executions.
func (c *Client) SpawnChildren(ctx context.Context, req SpawnChildren) (Spawned, error) {
	req.Attempt = c.Attempt
	var out Spawned
	err := c.post(ctx, c.path("children"), req, &out)
	return out, err
}

// ChildrenStatus reads how the children are doing.
func (c *Client) ChildrenStatus(ctx context.Context) (ChildrenStatus, error) {
	var out ChildrenStatus
	err := c.post(ctx, c.path("children", "status"), Attempt{c.Attempt}, &out)
	return out, err
}

// Config reads CONFIG_KV keys.
func (c *Client) Config(ctx context.Context, keys []string) (ConfigValues, error) {
	var out ConfigValues
	err := c.post(ctx, c.path("config"), ConfigRequest{Attempt: c.Attempt, Keys: keys}, &out)
	return out, err
}

// Repository reads a repository through the edge.
func (c *Client) Repository(ctx context.Context, repo string) (Repository, error) {
	var out Repository
	err := c.post(ctx, c.path("github", "repository"), RepoRequest{Attempt: c.Attempt, Repo: repo}, &out)
	return out, err
}

// OpenPullRequests lists a repository's open pull requests through the edge.
func (c *Client) OpenPullRequests(ctx context.Context, repo string) (PullRequests, error) {
	var out PullRequests
	err := c.post(ctx, c.path("github", "pulls"), RepoRequest{Attempt: c.Attempt, Repo: repo}, &out)
	return out, err
}

// OpenDraftPullRequest opens or updates a draft pull request through the edge.
func (c *Client) OpenDraftPullRequest(ctx context.Context, pr DraftPullRequest) (PullRequestResult, error) {
	var out PullRequestResult
	err := c.post(ctx, c.path("github", "pull-request"), DraftRequest{Attempt: c.Attempt, DraftPullRequest: pr}, &out)
	return out, err
}

// Prior reads the newest finished execution of a family.
func (c *Client) Prior(ctx context.Context, family string) (Prior, error) {
	var out Prior
	err := c.post(ctx, c.path("prior"), PriorRequest{Attempt: c.Attempt, Family: family}, &out)
	return out, err
}

// PreviewRequest asks for a preview URL of a port of the attempt's sandbox
// (POST /v1/agent/<exec>/preview); 503 preview_not_configured where there are none.
type PreviewRequest struct {
	Attempt int `json:"attempt"`
	Port    int `json:"port"`
}

// Preview answers PreviewRequest: a URL that serves the port while the attempt runs.
type Preview struct {
	URL string `json:"url"`
}

// Preview asks the edge for a preview URL of port.
func (c *Client) Preview(ctx context.Context, port int) (Preview, error) {
	var out Preview
	err := c.post(ctx, c.path("preview"), PreviewRequest{Attempt: c.Attempt, Port: port}, &out)
	return out, err
}
