//go:build !js

// Package workertest builds the flare-dispatch Worker and runs it under `wrangler dev`,
// offline, for tests and benchmarks: a random port, a temporary persistence
// directory (D1 migrated on request), containers disabled and the sandboxes pointed
// at a local agent URL, such as a `flare agent-supervisor` it starts (StartSupervisor).
// It also reads the wasm's name section, for the size guards (WasmFuncs).
//
// It needs worker/node_modules (`cd worker && npm ci`); Require reports its absence
// as a failure when the environment variable CI is set, and as a skip otherwise.
package workertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/ci"
)

// Root returns the repository root (the directory of go.mod).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ErrNoNodeModules means worker/node_modules has not been installed.
var ErrNoNodeModules = errors.New("worker/node_modules is missing: run (cd worker && npm ci)")

func wrangler(root string) (string, error) {
	p := filepath.Join(root, "worker", "node_modules", ".bin", "wrangler")
	if _, err := os.Stat(p); err != nil {
		return "", ErrNoNodeModules
	}
	return p, nil
}

// Require builds the Worker once per process and returns the repository root. A
// missing worker/node_modules fails tb under CI and skips it otherwise.
func Require(tb testing.TB) string {
	tb.Helper()
	root, err := Root()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := wrangler(root); err != nil {
		ci.Skip(tb, "%v", err)
	}
	if err := Build(root); err != nil {
		tb.Fatal(err)
	}
	return root
}

var (
	buildOnce sync.Once
	buildErr  error
)

// Build runs worker/build.sh --no-dry-run once per process.
func Build(root string) error {
	buildOnce.Do(func() {
		cmd := exec.Command(filepath.Join(root, "worker", "build.sh"), "--no-dry-run")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("worker/build.sh: %w\n%s", err, out)
		}
	})
	return buildErr
}

// DryRun runs `wrangler deploy --dry-run` (worker/build.sh) and returns the bundle's
// upload and gzip sizes in KiB as wrangler reports them.
func DryRun(root string) (upload, gzip float64, err error) {
	cmd := exec.Command(filepath.Join(root, "worker", "build.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "FLARE_GZIP_WARN_KIB=1000000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("worker/build.sh: %w\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if _, after, ok := strings.Cut(line, "Total Upload: "); ok {
			_, err := fmt.Sscanf(after, "%f KiB / gzip: %f KiB", &upload, &gzip)
			return upload, gzip, err
		}
	}
	return 0, 0, fmt.Errorf("no size in worker/build.sh's output:\n%s", out)
}

// Options configure Start.
type Options struct {
	// PersistDir keeps Durable Object, D1, KV and R2 state; Start makes a temporary
	// one when empty (and the caller removes nothing: use t.TempDir()).
	PersistDir string
	// AgentURL is passed as the var AGENT_URL: the sandbox classes forward there.
	AgentURL string
	// Vars are more --var pairs. PUBLIC_ORIGIN defaults to the Worker's own URL.
	Vars map[string]string
	// Migrate applies the D1 migrations (migrations/) to PersistDir first, with
	// `wrangler d1 migrations apply RUNS_METADATA --local`.
	Migrate bool
	// Ready is how long to wait for the Worker to answer (default 60 s).
	Ready time.Duration
	// ReadyPath is what must answer 200 before Start returns (default /health, which
	// also starts the Go runtime; /__dev/js/health answers once the isolate is up).
	ReadyPath string
	// KV are keys to put first, by binding, the way an operator does:
	// `wrangler kv key put --binding B KEY VALUE --local`.
	KV map[string]map[string]string
	// Log, when set, also receives everything wrangler dev prints (Logs keeps only
	// the last 256 KiB): a bench writes it to a file to diagnose a failure after the fact.
	Log io.Writer
}

// Worker is a running `wrangler dev`.
type Worker struct {
	URL string // http://127.0.0.1:PORT

	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{}
	err  error
	stop sync.Once
}

// Start runs the built Worker under `wrangler dev` and waits until GET opt.ReadyPath
// (default /health, which also starts the Go runtime) answers 200.
func Start(ctx context.Context, root string, opt Options) (*Worker, error) {
	bin, err := wrangler(root)
	if err != nil {
		return nil, err
	}
	if opt.PersistDir == "" {
		if opt.PersistDir, err = os.MkdirTemp("", "flare-wrangler-"); err != nil {
			return nil, err
		}
	}
	if opt.Ready == 0 {
		opt.Ready = 60 * time.Second
	}
	if opt.ReadyPath == "" {
		opt.ReadyPath = "/health"
	}
	if opt.Migrate {
		if err := Migrate(ctx, root, opt.PersistDir); err != nil {
			return nil, err
		}
	}
	for binding, keys := range opt.KV {
		for k, v := range keys {
			cmd := exec.CommandContext(ctx, bin, "kv", "key", "put", "--binding", binding, k, v, "--local",
				"--persist-to", opt.PersistDir, "--config", filepath.Join(root, "wrangler.jsonc"))
			cmd.Dir = filepath.Join(root, "worker")
			cmd.Env = offlineEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("wrangler kv key put --binding %s %s: %w\n%s", binding, k, err, out)
			}
		}
	}
	// A port freePort found free can be taken again before wrangler binds it (by
	// wrangler's or workerd's own sockets on ephemeral ports): wrangler then exits with
	// "Address already in use", and the start is tried again on other ports.
	for attempt := 1; ; attempt++ {
		w, err := launch(ctx, bin, root, opt)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return w, err
		}
	}
}

// launch is one start of wrangler dev on two ports found free.
func launch(ctx context.Context, bin, root string, opt Options) (*Worker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	inspector, err := freePort()
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{"dev", "--config", filepath.Join(root, "wrangler.jsonc"),
		"--ip", "127.0.0.1", "--port", strconv.Itoa(port), "--inspector-port", strconv.Itoa(inspector),
		"--persist-to", opt.PersistDir, "--show-interactive-dev-session=false",
		"--enable-containers=false", "--test-scheduled", "--log-level", "log",
		"--var", "FLARE_DEV_ROUTES:true"}
	if opt.AgentURL != "" {
		args = append(args, "--var", "AGENT_URL:"+opt.AgentURL)
	}
	if _, ok := opt.Vars["PUBLIC_ORIGIN"]; !ok {
		args = append(args, "--var", "PUBLIC_ORIGIN:"+url)
	}
	for k, v := range opt.Vars {
		args = append(args, "--var", k+":"+v)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Join(root, "worker")
	cmd.Env = offlineEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := &logBuffer{max: 256 << 10}
	var out io.Writer = logs
	if opt.Log != nil {
		out = io.MultiWriter(logs, opt.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start wrangler dev: %w", err)
	}
	w := &Worker{URL: url, cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		close(w.done)
	}()
	if err := w.waitReady(ctx, opt.ReadyPath, opt.Ready); err != nil {
		w.Stop()
		return nil, fmt.Errorf("%w\n--- wrangler dev output ---\n%s", err, logs.String())
	}
	return w, nil
}

// offlineEnv is the environment of every wrangler command: no metrics, no network.
func offlineEnv() []string {
	return append(os.Environ(),
		"WRANGLER_SEND_METRICS=false", "WRANGLER_SEND_ERROR_REPORTS=false", "CLOUDFLARE_CF_FETCH_ENABLED=false",
		// wrangler dev resolves registry images of the containers entry against an
		// account even with --enable-containers=false; placeholders keep it offline.
		"CLOUDFLARE_ACCOUNT_ID=00000000000000000000000000000000", "CLOUDFLARE_API_TOKEN=offline-dev-placeholder",
		"NO_COLOR=1", "FORCE_COLOR=0")
}

// Migrate applies migrations/ to the local D1 database RUNS_METADATA kept under
// persistDir, as `wrangler dev --persist-to persistDir` will find it.
func Migrate(ctx context.Context, root, persistDir string) error {
	return d1(ctx, root, persistDir, []string{"migrations", "apply"})
}

// D1Exec runs SQL on the local D1 database RUNS_METADATA kept under persistDir
// (`wrangler d1 execute --local`), as an operator would.
func D1Exec(ctx context.Context, root, persistDir, sql string) error {
	return d1(ctx, root, persistDir, []string{"execute"}, "--command", sql)
}

// d1 runs `wrangler d1 <command> RUNS_METADATA --local <flags>` on persistDir.
func d1(ctx context.Context, root, persistDir string, command []string, flags ...string) error {
	bin, err := wrangler(root)
	if err != nil {
		return err
	}
	args := append(append([]string{"d1"}, command...), "RUNS_METADATA", "--local")
	args = append(append(args, flags...), "--persist-to", persistDir, "--config", filepath.Join(root, "wrangler.jsonc"))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = filepath.Join(root, "worker")
	cmd.Env = offlineEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("wrangler d1 %s: %w\n%s", strings.Join(command, " "), err, out)
	}
	return nil
}

func (w *Worker) waitReady(ctx context.Context, path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-w.done:
			return fmt.Errorf("wrangler dev exited before it was ready: %v", w.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if res, err := c.Get(w.URL + path); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wrangler dev not ready after %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends wrangler dev and its workerd: SIGTERM to wrangler, which stops workerd,
// then SIGKILL to the whole process group after 5 s or once wrangler is gone.
func (w *Worker) Stop() {
	w.stop.Do(func() {
		pgid := w.cmd.Process.Pid
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-w.done
		}
		// workerd may outlive wrangler in the group: make sure nothing is left.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// Logs returns what wrangler dev printed (the last 256 KiB).
func (w *Worker) Logs() string { return w.logs.String() }

// freePort is a variable so that a test can hand Start a port that is taken.
var freePort = func() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logBuffer keeps the last max bytes written to it.
type logBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if over := l.b.Len() - l.max; over > 0 {
		l.b.Next(over)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
