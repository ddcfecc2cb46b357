package dsl

import (
	"context"
	"encoding/json"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
)

// The capabilities of the agentic runs (pr-review, ci-triage-pr, spec-drift-pr),
// brokered by the edge like the others: the sandbox holds no GitHub or model key.

// PRComments is the one comment a run keeps on a pull request, found by a marker line
// and updated in place (Spec.Needs.Comments).
type PRComments interface {
	// FindComment returns the body of the pull request's comment that contains
	// marker; found is false when there is none.
	FindComment(ctx context.Context, repo string, pr int, marker string) (body string, found bool, err error)
	// PutComment creates the comment, or replaces the body of the one holding marker.
	PutComment(ctx context.Context, repo string, pr int, marker, body string) (CommentResult, error)
}

// CommentResult is what PutComment did.
type CommentResult struct {
	ID      int64  `json:"id"`
	URL     string `json:"url,omitempty"`
	Created bool   `json:"created"`
}

// CIRuns reads a repository's finished workflow runs (Spec.Needs.CI).
type CIRuns interface {
	// FailedRuns lists the workflow runs that completed with a failure since the time.
	FailedRuns(ctx context.Context, repo string, since time.Time) ([]WorkflowRun, error)
}

// WorkflowRun is one GitHub Actions workflow run (the agent API's wire type).
type WorkflowRun = agentapi.WorkflowRun

// HistoryFetcher is a sandbox that can deepen a shallow checkout: FetchHistory makes
// dir hold base and enough history of it and HEAD to find their merge base (what a
// three-dot diff needs).
type HistoryFetcher interface {
	FetchHistory(ctx context.Context, dir, base string) error
}

// ModelAWS selects the role a Bedrock call assumes (operator-trusted dispatch inputs).
type ModelAWS = agentapi.ModelAWS

// Cooldown caps how often a run starts for the same repository and scope (contract
// §5.6): inside Window after a start, a dispatch or webhook for the same scope is
// answered with the earlier execution and skipped: "cooldown".
type Cooldown struct {
	Window time.Duration
	// Scope is the scope of a dispatch's decoded inputs (e.g. "pr-<number>"); "" caps
	// nothing.
	Scope func(inputs json.RawMessage) string
}
