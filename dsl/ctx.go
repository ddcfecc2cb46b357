package dsl

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Ctx is what a run body gets: the attempt's context (cancelled when the attempt must
// stop), who it is, and the capabilities. Do not copy a Ctx; pass the pointer.
type Ctx struct {
	context.Context
	Exec    string // execution id
	Attempt int
	Run     string
	GitHub  GitHub
	Journal Journal
	Sandbox Sandbox
	Secrets SecretSource
	Log     *slog.Logger
	Local   bool // running under `flare up`/`flare run`: local repository paths are allowed

	// Capabilities (capabilities.go); nil when the platform does not offer one.
	Cache     Cache
	Artifacts Artifacts
	Config    ConfigStore
	GitHubAPI GitHubAPI
	Children  Children
	Suspender Suspender
	IO        IO
	Model     ModelGateway
	Browser   Browser
	Comments  PRComments
	CI        CIRuns

	steps   atomic.Pointer[stepNames]
	success atomic.Pointer[attemptState]
}

// GitHub is the dispatch's target.
type GitHub struct {
	Repo     string // owner/name
	Ref      string
	SHA      string
	PRNumber int
}

// Journal is the durable step journal (the run actor's, through the edge's agent API).
type Journal interface {
	// Begin asks whether step already completed; if so it returns the recorded result
	// or failure.
	Begin(ctx context.Context, step string) (done bool, result json.RawMessage, f *Failure, err error)
	// End records the step's result, or its failure when f is not nil.
	End(ctx context.Context, step string, result json.RawMessage, f *Failure) error
}

// SecretSource loads secrets from the edge's CONFIG_KV by prefix and key; the prefix is
// the only scope (the edge checks no per-run or per-repository allow-list).
type SecretSource interface {
	// Load returns the values found under prefix+key, keyed by key. When required and
	// any key is missing, it returns *SecretsMissing naming them.
	Load(ctx context.Context, keys []string, prefix string, required bool) (map[string]string, error)
}

// Sandbox is the machine the run's commands execute on.
type Sandbox interface {
	// Checkout clones repo (owner/name; in local mode also a local path or file:// URL)
	// at the full commit sha and returns the directory. It is idempotent: a directory
	// already at sha is returned as it is. Failures are *CheckoutFailed.
	Checkout(ctx context.Context, repo, sha string) (dir string, err error)
	// Exec runs r.Command with sh -c. A non-zero exit is a normal result; the error is
	// *ExecFailed when the command could not run and *ExecTimeout when r.Timeout passed.
	Exec(ctx context.Context, r ExecRequest) (ExecResult, error)
	// ReadFile reads a file of the sandbox (relative paths are under the workspace).
	// Failures are *ReadFileFailed.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// RunDetached starts r.Command in the background (its own process group and command
	// log) and returns at once. The process lives as long as the attempt; r.Timeout
	// bounds it.
	RunDetached(ctx context.Context, r ExecRequest) (Process, error)
	// WaitForExit waits for a detached process to end and returns how it ended.
	WaitForExit(ctx context.Context, p Process) (ExecResult, error)
	// WaitForPort waits until something accepts TCP connections on the port on the
	// loopback interface; *PortNeverOpened after timeout, or as soon as p (when not
	// zero) has exited.
	WaitForPort(ctx context.Context, p Process, port int, timeout time.Duration) error
	// ExposePort gives a port of the sandbox a URL the edge and the outside can reach;
	// *ExposePortFailed when the platform has no preview URLs.
	ExposePort(ctx context.Context, port int) (string, error)
	// Exists reports whether path (a file or a directory) exists in the sandbox.
	Exists(ctx context.Context, path string) (bool, error)
	// Changes lists what differs between the checkout at dir and its commit: changed and
	// new files (not ignored ones) and deletions, sorted by path.
	Changes(ctx context.Context, dir string) ([]Change, error)
}

// Process is a detached command: a handle that fits in a step result.
type Process struct {
	ID      string `json:"id"`
	Command string `json:"command"`
	LogURI  string `json:"logUri"`
}

// Change is one path that differs from the checked-out commit.
type Change struct {
	Path    string `json:"path"`              // slash-separated, relative to the checkout
	Deleted bool   `json:"deleted,omitempty"` // removed from the working tree
	Mode    string `json:"mode,omitempty"`    // 100644, 100755 or 120000 (a symlink); "" when deleted
	Size    int64  `json:"size,omitempty"`
}

// ExecRequest is one command.
type ExecRequest struct {
	Dir     string            // working directory (a Checkout result); "" = the workspace
	Command string            // run with sh -c
	Env     map[string]string // added to the sandbox's base environment
	Timeout time.Duration     // 0 = none beyond the context
	// Quiet runs the command without a command log: its output is only in the result's
	// tails. For the run's own probes (toolchain versions), so the user's first command
	// stays exec.ndjson.
	Quiet bool
}

// ExecResult is how a command ended. The tails are the last bytes of each stream
// (at most 16 KiB each), with loaded secrets redacted.
type ExecResult struct {
	ExitCode   int    `json:"exitCode"`
	DurationMs int64  `json:"durationMs"`
	LogURI     string `json:"logUri"`
	StdoutTail string `json:"stdoutTail,omitempty"`
	StderrTail string `json:"stderrTail,omitempty"`
}

// stepNames remembers the step names a run used, so a name used twice (which would
// replay the first step's result) is caught.
type stepNames struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (c *Ctx) claimStep(name string) bool {
	s := c.steps.Load()
	if s == nil {
		c.steps.CompareAndSwap(nil, &stepNames{seen: map[string]bool{}})
		s = c.steps.Load()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[name] {
		return false
	}
	s.seen[name] = true
	return true
}

func (c *Ctx) logger() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}
