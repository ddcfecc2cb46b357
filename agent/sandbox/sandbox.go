// Package sandbox is the agent's implementation of dsl.Sandbox: git checkouts into the
// workspace and shell commands run in a process group of their own, with an
// environment built from an allowlist, output streamed as NDJSON log segments and
// loaded secrets redacted. The same code runs in a production container and as a local
// agent process.
package sandbox

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/logship"
	"github.com/flare-dispatch/flare-dispatch/agent/redact"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// GitTokenFunc returns a short-lived token to clone repo (owner/name) from GitHub; ""
// means clone anonymously.
type GitTokenFunc func(ctx context.Context, repo string) (string, error)

// Config sets up a Sandbox for one attempt.
type Config struct {
	Workspace string // root of the sandbox's files; HOME of every command
	Local     bool   // local mode: repositories may be local paths or file:// URLs

	Logs      logship.Sink // where command logs go; nil: not shipped
	LogPrefix string       // logs/<exec>/
	// LogNumbering gives the number of this attempt's first command log (1 →
	// exec.ndjson) and the run's log budget shared by its command logs (nil:
	// unbounded). It is called once, when the first command log is numbered, so the
	// agent lists the execution's earlier logs while the checkout runs rather than
	// before it. nil: numbering from 1, unbounded.
	LogNumbering func() (first int, quota *logship.Quota)
	LogGiveUp    time.Duration // how long one log segment's put is retried (default logship.DefaultGiveUp)

	Redactor *redact.Redactor // secrets to mask in logs, tails and errors
	GitToken GitTokenFunc     // nil: clone anonymously
	// GitHubURL is where owner/name repositories are cloned from (default
	// https://github.com; tests point it at a local server).
	GitHubURL string
	KillGrace time.Duration // SIGTERM → SIGKILL on timeout or cancel (default 5 s)
	Log       *slog.Logger
	// Expose asks the platform for a preview URL of a port (the edge's agent API);
	// nil, or a local sandbox: ports are on loopback.
	Expose func(ctx context.Context, port int) (string, error)
}

// Sandbox runs one attempt's checkouts and commands.
type Sandbox struct {
	cfg Config

	mu       sync.Mutex
	nextExec int
	numbered sync.Once      // LogNumbering asked
	quota    *logship.Quota // the log budget LogNumbering gave
	repoLock map[string]*sync.Mutex
	procs    map[string]*detached  // RunDetached's commands, by id
	checked  map[string]checkedOut // what Checkout left, by directory
}

var _ dsl.Sandbox = (*Sandbox)(nil)

// New prepares the workspace.
func New(cfg Config) (*Sandbox, error) {
	if cfg.Workspace == "" {
		return nil, errorf("sandbox: no workspace")
	}
	ws, err := filepath.Abs(cfg.Workspace)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return nil, err
	}
	cfg.Workspace = ws
	if cfg.GitHubURL == "" {
		cfg.GitHubURL = "https://github.com"
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	if cfg.Redactor == nil {
		cfg.Redactor = &redact.Redactor{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Sandbox{cfg: cfg, nextExec: 1, repoLock: map[string]*sync.Mutex{}, checked: map[string]checkedOut{}}, nil
}

// baseEnv is the environment every process in the sandbox starts from: the agent's
// own environment filtered by agentapi.PassEnv (never wholesale); HOME is always the
// workspace.
func (s *Sandbox) baseEnv() map[string]string {
	env := agentapi.InheritEnv(os.LookupEnv)
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	}
	env["HOME"] = s.cfg.Workspace
	env["CI"] = "true"
	return env
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}
