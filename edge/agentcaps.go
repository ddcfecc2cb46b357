package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Capabilities the edge brokers for the agent, each checked against the run's declared
// needs (dsl.Spec.Needs) and the execution's own repository:
//
//	POST /v1/agent/:exec/config               CONFIG_KV reads inside the run's namespaces
//	POST /v1/agent/:exec/github/repository    GET a repository (the execution's own)
//	POST /v1/agent/:exec/github/pulls         its open pull requests
//	POST /v1/agent/:exec/github/pull-request  a draft pull request (Needs.PullRequests)
//	POST /v1/agent/:exec/prior                the newest finished execution of a family

// PriorExecutions is the optional Metadata query behind io.priorExecution.
type PriorExecutions interface {
	PriorExecution(ctx context.Context, family, exclude string) (Execution, bool, error)
}

// Limits of the brokered capabilities.
const (
	maxConfigKeys = 100
	// DraftBranchPrefix starts every branch a run may push through the agent API, so a
	// run can never force-update a branch people work on.
	DraftBranchPrefix = "flare-dispatch/"
	maxDraftBytes     = 5 << 20
	maxDraftFiles     = 200
)

// agentExecution authenticates an agent call, checks the attempt is current, and loads
// the execution's params and run.
func (s *Server) agentExecution(w http.ResponseWriter, r *http.Request, into any) (string, Params, dsl.Run, bool) {
	id, _, ok := s.agentLive(w, r, into)
	if !ok {
		return "", Params{}, nil, false
	}
	ex, err := s.Meta.Execution(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return "", Params{}, nil, false
	}
	var p Params
	_ = json.Unmarshal(ex.Input, &p)
	run, ok := s.Runs[ex.Run]
	if !ok {
		writeError(w, http.StatusNotFound, "run_not_found", fmt.Sprintf("unknown run %q", ex.Run))
		return "", Params{}, nil, false
	}
	return id, p, run, true
}

func (s *Server) agentConfig(w http.ResponseWriter, r *http.Request) {
	var q agentapi.ConfigRequest
	_, _, run, ok := s.agentExecution(w, r, &q)
	if !ok {
		return
	}
	if len(q.Keys) > maxConfigKeys {
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("at most %d keys", maxConfigKeys), "field", "keys")
		return
	}
	spaces := run.Spec().ConfigNamespaces()
	for i, k := range q.Keys {
		if !configKeyAllowed(spaces, k) {
			writeError(w, http.StatusForbidden, "config_key_not_allowed",
				fmt.Sprintf("run %s may read keys under %s.* (never .secret/ keys), not %q", run.Spec().Name, strings.Join(spaces, ".*, "), k),
				"field", fmt.Sprintf("keys[%d]", i))
			return
		}
	}
	out := agentapi.ConfigValues{Values: map[string]string{}}
	for _, k := range q.Keys {
		v, found, err := s.configKV().Get(r.Context(), k)
		if err != nil && !errors.Is(err, ErrNotFound) {
			writeError(w, http.StatusInternalServerError, "kv_error", err.Error())
			return
		}
		if found {
			out.Values[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// configKeyAllowed: inside a namespace, and not a secret (secrets go through
// loadSecrets, which redacts them).
func configKeyAllowed(spaces []string, key string) bool {
	if strings.Contains(key, ".secret/") || strings.ContainsAny(key, "\x00\r\n") || reservedKey(key) {
		return false
	}
	for _, ns := range spaces {
		if ns != "" && strings.HasPrefix(key, ns+".") && len(key) > len(ns)+1 {
			return true
		}
	}
	return false
}

// githubTarget checks the brokered call is for the execution's own repository and
// that GitHub is configured.
func (s *Server) githubTarget(w http.ResponseWriter, p Params, repo string) bool {
	if repo != p.Repo {
		writeError(w, http.StatusForbidden, "repo_not_allowed", fmt.Sprintf("execution %s may use %s, not %s", p.Exec, p.Repo, repo), "field", "repo")
		return false
	}
	if s.GitHub == nil {
		writeError(w, http.StatusServiceUnavailable, "github_not_configured", "GitHub App credentials are not configured on this deploy")
		return false
	}
	return true
}

// githubFailed answers a failed brokered call: 424 github_error with GitHub's status
// and why, which the agent turns into dsl.GitHubApiError.
func (s *Server) githubFailed(w http.ResponseWriter, exec string, err error) {
	s.Log.Warn("brokered GitHub call failed", "execution", exec, "err", err)
	g := agentapi.GitHubError{Error: "github_error", Message: err.Error(), Reason: "other"}
	var ge *GitHubError
	if errors.As(err, &ge) {
		g.Status, g.Reason, g.RetryAfterMs, g.Message = ge.Status, ge.Reason, ge.RetryAfter.Milliseconds(), ge.Message
	}
	writeJSON(w, http.StatusFailedDependency, g)
}

func (s *Server) agentGitHubRepository(w http.ResponseWriter, r *http.Request) {
	var q agentapi.RepoRequest
	id, p, _, ok := s.agentExecution(w, r, &q)
	if !ok || !s.githubTarget(w, p, q.Repo) {
		return
	}
	repo, err := s.GitHub.Repository(r.Context(), p.InstallationID, q.Repo)
	if err != nil {
		s.githubFailed(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, agentapi.Repository{FullName: repo.FullName, DefaultBranch: repo.DefaultBranch, Private: repo.Private, HTMLURL: repo.HTMLURL})
}

func (s *Server) agentGitHubPulls(w http.ResponseWriter, r *http.Request) {
	var q agentapi.RepoRequest
	id, p, _, ok := s.agentExecution(w, r, &q)
	if !ok || !s.githubTarget(w, p, q.Repo) {
		return
	}
	prs, err := s.GitHub.OpenPullRequests(r.Context(), p.InstallationID, q.Repo)
	if err != nil {
		s.githubFailed(w, id, err)
		return
	}
	out := agentapi.PullRequests{Pulls: make([]agentapi.PullRequest, 0, len(prs))}
	for _, pr := range prs {
		out.Pulls = append(out.Pulls, agentapi.PullRequest{Number: pr.Number, Title: pr.Title, Head: pr.Head, HeadSHA: pr.HeadSHA,
			Base: pr.Base, Draft: pr.Draft, URL: pr.URL, Author: pr.Author})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) agentGitHubPullRequest(w http.ResponseWriter, r *http.Request) {
	var q agentapi.DraftRequest
	id, p, run, ok := s.agentExecution(w, r, &q)
	if !ok {
		return
	}
	if !run.Spec().Needs.PullRequests {
		notDeclared(w, run, "pull requests", "Spec.Needs.PullRequests")
		return
	}
	if !s.githubTarget(w, p, q.Repo) {
		return
	}
	switch {
	case !strings.HasPrefix(q.HeadBranch, DraftBranchPrefix) || len(q.HeadBranch) == len(DraftBranchPrefix) ||
		strings.Contains(q.HeadBranch, "..") || strings.ContainsAny(q.HeadBranch, " ~^:?*[\\\x00\x7f") || strings.HasSuffix(q.HeadBranch, "/") ||
		strings.HasSuffix(q.HeadBranch, ".lock"):
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("head branch must be a valid branch under %s", DraftBranchPrefix), "field", "headBranch")
		return
	case strings.TrimSpace(q.Title) == "":
		writeError(w, http.StatusBadRequest, "invalid_body", "title is required", "field", "title")
		return
	case strings.TrimSpace(q.CommitMessage) == "":
		writeError(w, http.StatusBadRequest, "invalid_body", "commitMessage is required", "field", "commitMessage")
		return
	case len(q.Files) > maxDraftFiles:
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("at most %d files", maxDraftFiles), "field", "files")
		return
	}
	files := make([]PRFile, 0, len(q.Files))
	total := 0
	seen := map[string]bool{}
	for i, f := range q.Files {
		why := pathProblem(f.Path)
		if why == "" && isWorkflowPath(f.Path) {
			why = "workflows"
		}
		if why == "" && seen[f.Path] {
			why = "duplicate"
		}
		if why != "" {
			writeError(w, http.StatusBadRequest, "invalid_body", why+": "+showPath(f.Path), "field", fmt.Sprintf("files[%d].path", i))
			return
		}
		seen[f.Path] = true
		total += len(f.Content)
		files = append(files, PRFile{Path: f.Path, Content: []byte(f.Content), Delete: f.Deleted, Executable: f.Executable})
	}
	if total > maxDraftBytes {
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("files total %d bytes (at most %d)", total, maxDraftBytes), "field", "files")
		return
	}
	res, err := s.GitHub.OpenPullRequest(r.Context(), p.InstallationID, q.Repo, PullRequestSpec{
		Branch: q.HeadBranch, Base: q.BaseBranch, CommitMessage: q.CommitMessage, Files: files,
		PR: &PROptions{Title: q.Title, Body: q.Body, Draft: true},
	})
	if err != nil {
		s.githubFailed(w, id, err)
		return
	}
	s.Log.Info("draft pull request", "execution", id, "repo", q.Repo, "branch", res.Branch, "pr", res.Number, "created", res.Created)
	writeJSON(w, http.StatusOK, agentapi.PullRequestResult{Number: res.Number, URL: res.URL, Created: res.Created, Branch: res.Branch,
		Commit: res.Commit, Files: res.Files, Deletions: res.Deletions, Skipped: res.Skipped})
}

func (s *Server) agentPrior(w http.ResponseWriter, r *http.Request) {
	var q agentapi.PriorRequest
	id, _, run, ok := s.agentExecution(w, r, &q)
	if !ok {
		return
	}
	name := run.Spec().Name
	if q.Family != name && !strings.HasPrefix(q.Family, name+":") {
		writeError(w, http.StatusForbidden, "family_not_allowed", fmt.Sprintf("run %s may read the families %s and %s:…", name, name, name), "field", "family")
		return
	}
	pe, ok := s.Meta.(PriorExecutions)
	if !ok {
		writeError(w, http.StatusNotImplemented, "platform_not_supported", "this metadata store cannot look up earlier executions")
		return
	}
	ex, found, err := pe.PriorExecution(r.Context(), q.Family, id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return
	}
	if !found {
		writeJSON(w, http.StatusOK, agentapi.Prior{})
		return
	}
	writeJSON(w, http.StatusOK, agentapi.Prior{Found: true, Exec: ex.ID, Status: ex.Status, CompletedAt: ex.CompletedAt, Output: ex.Summary})
}
