package edge

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
)

// Actors is how the edge talks to the actors: the native host locally, Durable
// Object stubs on Cloudflare.
type Actors interface {
	Send(to actors.Addr, m actors.Message) error
	Call(ctx context.Context, to actors.Addr, m actors.Message) (actors.Message, error)
}

// ErrNotFound is returned (wrapped) by ports when a row or key does not exist.
var ErrNotFound = errors.New("not found")

// Execution is one row of the executions table: a projection of the run actor.
type Execution struct {
	ID          string          `json:"id"`
	Run         string          `json:"run"`
	Repo        string          `json:"repo"`
	Ref         string          `json:"ref"`
	SHA         string          `json:"sha"`
	Status      string          `json:"status"`
	StartedAt   time.Time       `json:"startedAt"`
	CompletedAt time.Time       `json:"completedAt,omitzero"`
	Parent      string          `json:"parentExecutionId,omitempty"`
	Input       json.RawMessage `json:"-"` // the dispatch params; never shown
	Summary     json.RawMessage `json:"summary,omitempty"`
	CheckRunID  int64           `json:"checkRunId,omitempty"`
}

// ExecutionListing is an execution as listings show it: the row, when its first
// step started (the end of its queue wait), and its cost once it has one.
type ExecutionListing struct {
	Execution
	FirstStepAt time.Time
	Cost        *Cost
}

// StepRow is one row of the steps table.
type StepRow struct {
	Exec        string    `json:"-"`
	Name        string    `json:"name"`
	Status      string    `json:"status"`
	Attempt     int       `json:"attempt"`
	StartedAt   time.Time `json:"startedAt"`
	CompletedAt time.Time `json:"completedAt,omitzero"`
	ExitCode    *int      `json:"exitCode,omitempty"`
	ErrorTag    string    `json:"errorTag,omitempty"`
}

// Metadata is the SQL projection (D1 in production, SQLite locally).
type Metadata interface {
	// CreateExecution inserts the row if absent; created reports whether it did.
	CreateExecution(ctx context.Context, e Execution) (created bool, err error)
	// UpdateExecution writes status, completion time, summary and check-run id
	// (zero values leave a column as it is).
	UpdateExecution(ctx context.Context, e Execution) error
	// ReopenExecution sets the row back to queued with no completion time and no
	// summary: a retry of a dispatch whose start failed (Start) runs it after all.
	ReopenExecution(ctx context.Context, id string) error
	Execution(ctx context.Context, id string) (Execution, error)
	// ListExecutions returns the executions f selects, newest first, never their
	// input (GET /v1/executions, the dashboard, a fan-out's children).
	ListExecutions(ctx context.Context, f ExecutionFilter) ([]ExecutionListing, error)
	// PutCost records an execution's cost (cost.go), replacing an earlier one.
	PutCost(ctx context.Context, exec string, c Cost) error
	// CostTotals sums the recorded costs of top-level executions (a fan-out parent's
	// cost includes its children) per repository and month, newest month first.
	CostTotals(ctx context.Context, f CostFilter) ([]CostTotal, error)
	PutStep(ctx context.Context, s StepRow) error
	Steps(ctx context.Context, exec string) ([]StepRow, error)
}

// KV is key/value with expiry (CONFIG_KV / IDEMPOTENCY_KV; SQLite locally).
type KV interface {
	Get(ctx context.Context, key string) (string, bool, error)
	Put(ctx context.Context, key, value string, ttl time.Duration) error // ttl 0: no expiry
}

// Sandboxes starts and stops agents: Containers in production, agent child
// processes locally.
type Sandboxes interface {
	Start(ctx context.Context, sandbox, pool string, s agentapi.Start) error
	Stop(ctx context.Context, sandbox string, c agentapi.Cancel) error
}

// Checks reports an execution's progress where people look: a GitHub check-run with
// App credentials, a stored summary without.
type Checks interface {
	Report(ctx context.Context, e Execution, r CheckReport) (checkRunID int64, err error)
}

// CheckReport is one check-run update.
type CheckReport struct {
	Name       string `json:"name"`
	Status     string `json:"status"`               // in_progress | completed
	Conclusion string `json:"conclusion,omitempty"` // success | failure | neutral | cancelled | timed_out
	Title      string `json:"title"`
	Summary    string `json:"summary"` // markdown
	DetailsURL string `json:"detailsUrl"`
	Install    int64  `json:"installationId,omitempty"` // GitHub App installation id; 0 = none
	// Annotations are the run's findings, on the completed report only (findings.go).
	Annotations []Annotation `json:"annotations,omitempty"`
}

// RepoTokens mints short-lived clone tokens (GitHub App installation tokens); nil on a
// deploy without App credentials.
type RepoTokens interface {
	// RepoToken returns a token for repo; installationID 0 means look it up by repo.
	RepoToken(ctx context.Context, repo string, installationID int64) (string, time.Time, error)
}
