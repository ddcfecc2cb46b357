package dsl

import (
	"context"
	"encoding/json"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
)

// The capabilities a run body reaches through its Ctx, beyond the Journal, Sandbox and
// Secrets of ctx.go. Each is one small interface; the agent provides the production
// implementation (over the edge's agent API and the blob store), tests provide fakes.
// A nil capability means the platform does not offer it; the primitives then fail with
// a typed error rather than panic.

// Cache stores directory trees per repository in the blob store, under keys the caller
// chooses (InstallCached uses <tool>-<sha256 of the lockfile>). Archives are tar.zst.
type Cache interface {
	// Restore extracts the archive stored under key over paths (absolute paths in the
	// sandbox, in the order they were saved). Hit is false when there is no archive.
	Restore(ctx context.Context, key string, paths []string) (CacheResult, error)
	// RestoreFallback is Restore of key or, when there is no archive under key, of the
	// newest archive whose key starts with the first of prefixes that has one
	// (CacheResult.FromKey names it).
	RestoreFallback(ctx context.Context, key string, prefixes, paths []string) (CacheResult, error)
	// Save archives paths under key, replacing any archive there. A sandbox without
	// write access to the cache (a pull request's execution) gets ReadOnly and no error.
	Save(ctx context.Context, key string, paths []string) (CacheResult, error)
	// Prefetch fetches the newest archive whose key starts with prefix into a staging
	// place of the sandbox, before the caller knows which key it needs (a run's
	// toolchain caches are keyed by a lockfile its checkout has not written yet). Nothing
	// to prefetch: nil and no error.
	Prefetch(ctx context.Context, prefix string) (Prefetched, error)
}

// Prefetched is an archive Prefetch fetched. Adopt or Drop it, once.
type Prefetched interface {
	Key() string
	// Adopt puts the staged files where Restore of Key would have put them, over paths
	// (in the order they were saved); CacheResult.Prefetched says so.
	Adopt(ctx context.Context, paths []string) (CacheResult, error)
	// Drop removes the staged files.
	Drop()
}

// CacheResult says what Restore or Save did.
type CacheResult struct {
	Key     string `json:"key"`
	Hit     bool   `json:"hit,omitempty"`     // Restore found the archive
	FromKey string `json:"fromKey,omitempty"` // the fallback key restored instead of Key
	// Prefetched: the archive was fetched while the checkout ran (Cache.Prefetch).
	Prefetched bool  `json:"prefetched,omitempty"`
	ReadOnly   bool  `json:"readOnly,omitempty"` // Save was not allowed; nothing stored
	Bytes      int64 `json:"bytes"`              // archive size (compressed)
	RawBytes   int64 `json:"rawBytes"`           // file bytes archived or extracted
	Files      int   `json:"files"`
	DurationMs int64 `json:"durationMs"`
}

// Artifacts stores an execution's files for people to download through the edge's
// /v1/artifacts/<execution>/<name>[/path] route.
type Artifacts interface {
	// Upload stores a file as it is, or a directory as a tar.gz at the bare name plus
	// each file under <name>/<path> for browsing. contentType "" means guess.
	Upload(ctx context.Context, name, path, contentType string) (Artifact, error)
	// UploadTree stores entries as a directory artifact, like Upload of a directory
	// holding exactly them.
	UploadTree(ctx context.Context, name string, entries []TreeEntry) (Artifact, error)
	// List returns the execution's artifacts (top level).
	List(ctx context.Context) ([]Artifact, error)
}

// Artifact is one stored artifact.
type Artifact struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	Size        int64  `json:"size"`
	Dir         bool   `json:"dir,omitempty"`
	Files       int    `json:"files,omitempty"`
	ContentType string `json:"contentType,omitempty"`
}

// TreeEntry is one file of a directory artifact: Source (a file in the sandbox) or Data.
type TreeEntry struct {
	Path       string // slash-separated, relative to the artifact's root
	Source     string // absolute path of a file in the sandbox; "" means Data
	Data       []byte
	Executable bool
}

// ConfigStore reads the run's configuration (CONFIG_KV) through the edge. Keys outside
// the run's declared namespaces (Spec.Needs.Config) are refused by the edge.
type ConfigStore interface {
	// Get returns the values found; absent keys are absent from the map.
	Get(ctx context.Context, keys []string) (map[string]string, error)
}

// GitHubAPI is GitHub as the edge brokers it: reads, and draft pull requests (which need
// Spec.Needs.PullRequests). The sandbox never holds a GitHub credential. Failures are
// *GitHubApiError.
type GitHubAPI interface {
	Repository(ctx context.Context, repo string) (Repository, error)
	OpenPullRequests(ctx context.Context, repo string) ([]PullRequest, error)
	OpenDraftPullRequest(ctx context.Context, pr DraftPullRequest) (PullRequestResult, error)
}

// The GitHub types are the agent API's wire types, used as they are: the agent hands
// them to the edge without a copy, and a field added to one is on the wire too.
type (
	// Repository is what a run learns about a repository.
	Repository = agentapi.Repository
	// PullRequest is an open pull request.
	PullRequest = agentapi.PullRequest
	// DraftPullRequest is a branch with files committed on top of a base branch and
	// the (draft) pull request for it; an open pull request for the branch is updated.
	DraftPullRequest = agentapi.DraftPullRequest
	// FileChange is one file of a pull request: its new content, or its deletion.
	FileChange = agentapi.FileChange
	// PullRequestResult is what OpenDraftPullRequest did.
	PullRequestResult = agentapi.PullRequestResult
)

// Children starts child executions of this one (fan-out) and reads how they ended.
type Children interface {
	// Spawn starts each child once: the id of child k is <execution>:<k>, and spawning an
	// id that exists changes nothing. Children queue at this execution's place.
	Spawn(ctx context.Context, failFast bool, children []ChildSpec) ([]string, error)
	// Results reads every child's status and, once ended, its output or failure.
	Results(ctx context.Context) ([]ChildResult, error)
}

// ChildSpec is one child execution: a key unique among siblings ([A-Za-z0-9_-]{1,40}),
// the run and its inputs.
type ChildSpec struct {
	Key    string `json:"key"`
	Run    string `json:"run"`
	Inputs any    `json:"inputs"`
}

// ChildResult is how a child is doing.
type ChildResult struct {
	Key        string          `json:"key"`
	Exec       string          `json:"executionId"`
	Run        string          `json:"run"`
	Status     string          `json:"status"` // queued … success | failure | cancelled | timed_out
	Output     json.RawMessage `json:"output,omitempty"`
	Failure    *Failure        `json:"failure,omitempty"`
	LogsURL    string          `json:"logsUrl,omitempty"`
	DurationMs int64           `json:"durationMs,omitempty"`
}

// Ended reports whether the child is over.
func (r ChildResult) Ended() bool {
	switch r.Status {
	case "success", "failure", "cancelled", "timed_out":
		return true
	}
	return false
}

// Suspender ends the attempt without ending the run (see Suspend).
type Suspender interface {
	// Suspend tells the run actor to wait for s, then stops the attempt: the agent
	// reports no exit and the attempt's context ends.
	Suspend(ctx context.Context, s Suspension) error
}

// Suspension is what a suspended run waits for; the first condition met resumes it.
type Suspension struct {
	Until    time.Time `json:"until,omitzero"`
	Children []string  `json:"children,omitempty"`
	Event    string    `json:"event,omitempty"`
}

// IO is the non-deterministic world: the clock, fresh ids, the agent's environment and
// earlier executions. Use it inside a step (or through Now/NewID) so a replay sees what
// the first attempt saw.
type IO interface {
	Now() time.Time
	NewID() string
	Getenv(key string) string
	// PriorExecution is the newest finished execution whose id starts with family+":",
	// other than this one; found is false when there is none.
	PriorExecution(ctx context.Context, family string) (prior PriorExecution, found bool, err error)
}

// PriorExecution is an earlier execution of a family.
type PriorExecution struct {
	Exec        string          `json:"executionId"`
	Status      string          `json:"status"`
	CompletedAt time.Time       `json:"completedAt,omitzero"`
	Output      json.RawMessage `json:"output,omitempty"`
}

// ModelGateway calls language models through the edge, which holds the keys and
// routes each call to a backend (edge/model). Failures are *ModelCallFailed,
// *BackendUnconfigured or *StructuredOutputInvalid.
type ModelGateway interface {
	Complete(ctx context.Context, r ModelRequest) (ModelResponse, error)
}

// The model types are the agent API's wire types (agentapi/agentic.go), used as they
// are, like the GitHub types above.
type (
	// ModelRequest is one completion. Model is prefixed by its route: @cf/…,
	// anthropic/…, bedrock/…, deepseek/…, openai/…; Backend overrides the prefix.
	ModelRequest = agentapi.ModelRequest
	// ModelTool is a tool the model may call, with its JSON Schema.
	ModelTool = agentapi.ModelTool
	// ModelResponse is the model's answer, with its tokens and cost.
	ModelResponse = agentapi.ModelResponse
	// ModelToolCall is one tool call the model made.
	ModelToolCall = agentapi.ModelToolCall
)
