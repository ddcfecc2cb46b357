package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/logship"
	"github.com/flare-dispatch/flare-dispatch/agent/redact"
	"github.com/flare-dispatch/flare-dispatch/agent/sandbox"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

func newSandbox(t *testing.T, mod func(*sandbox.Config)) *sandbox.Sandbox {
	t.Helper()
	cfg := sandbox.Config{Workspace: t.TempDir(), Local: true, KillGrace: 300 * time.Millisecond, Redactor: &redact.Redactor{}}
	if mod != nil {
		mod(&cfg)
	}
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// gone reports whether pid no longer runs (absent, or a zombie nobody reaped yet).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d survived", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestExecTimeoutKillsChildAndGrandchild(t *testing.T) {
	sb := newSandbox(t, nil)
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	// The shell starts a child shell that starts a grandchild; all ignore SIGTERM, so
	// only the SIGKILL to the whole group stops them.
	cmd := `trap "" TERM; sh -c 'sleep 300 & echo $! > ` + pidFile + `; wait' & wait`
	start := time.Now()
	res, err := sb.Exec(context.Background(), dsl.ExecRequest{Command: cmd, Timeout: 300 * time.Millisecond})
	var et *dsl.ExecTimeout
	if !errors.As(err, &et) || et.TimeoutSec != 1 {
		t.Fatalf("got %v, want ExecTimeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s", took)
	}
	if res.ExitCode != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit code %d", res.ExitCode)
	}
	waitGone(t, readPid(t, pidFile))
}

func TestExecKillsWhatTheCommandLeftRunning(t *testing.T) {
	sb := newSandbox(t, nil)
	pidFile := filepath.Join(t.TempDir(), "bg.pid")
	start := time.Now()
	res, err := sb.Exec(context.Background(), dsl.ExecRequest{Command: "sleep 300 & echo $! > " + pidFile + "; echo started"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("Exec waited for a background process holding its output")
	}
	if res.StdoutTail != "started\n" {
		t.Fatalf("stdout %q", res.StdoutTail)
	}
	waitGone(t, readPid(t, pidFile))
}

func TestExecCancelKillsTheGroup(t *testing.T) {
	sb := newSandbox(t, nil)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			// The shell creates the file before it writes the pid: wait for the line.
			if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_, err := sb.Exec(ctx, dsl.ExecRequest{Command: "sleep 300 & echo $! > " + pidFile + "; wait"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	waitGone(t, readPid(t, pidFile))
}

func TestExecNonZeroExitIsAResult(t *testing.T) {
	sb := newSandbox(t, nil)
	res, err := sb.Exec(context.Background(), dsl.ExecRequest{Command: "echo oops >&2; exit 3"})
	if err != nil || res.ExitCode != 3 || res.StderrTail != "oops\n" {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func TestExecMissingDirIsExecFailed(t *testing.T) {
	sb := newSandbox(t, nil)
	_, err := sb.Exec(context.Background(), dsl.ExecRequest{Dir: "/nonexistent/dir", Command: "true"})
	var ef *dsl.ExecFailed
	if !errors.As(err, &ef) {
		t.Fatalf("got %v", err)
	}
}

func TestExecEnvironmentIsAllowlisted(t *testing.T) {
	t.Setenv("FLARE_AGENT_PRIVATE", "must-not-leak")
	t.Setenv("LANG", "C.UTF-8")
	var ws string
	sb := newSandbox(t, func(c *sandbox.Config) { ws = c.Workspace })
	res, err := sb.Exec(context.Background(), dsl.ExecRequest{Command: "env", Env: map[string]string{"MY_VAR": "1", "LANG": "en_US.UTF-8"}})
	if err != nil {
		t.Fatal(err)
	}
	env := res.StdoutTail
	for _, want := range []string{"HOME=" + ws + "\n", "MY_VAR=1\n", "LANG=en_US.UTF-8\n", "PATH="} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "FLARE_AGENT_PRIVATE") {
		t.Errorf("the agent's own environment leaked:\n%s", env)
	}
}

// logSink ships logs into st with a credential scoped to the execution exec.
func logSink(t *testing.T, st *s3test.Store, exec string) *logship.S3Sink {
	t.Helper()
	id, secret := st.Credential(t, exec, "acme/web")
	sink, err := logship.NewS3Sink(logship.S3Config{Endpoint: st.URL, Bucket: st.Bucket, AccessKeyID: id, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

func TestExecRedactsSecretsAndShipsNumberedLogs(t *testing.T) {
	st := s3test.Start(t)
	sink := logSink(t, st, "ex9")
	red := &redact.Redactor{}
	red.Add("s3cr3t-value")
	sb := newSandbox(t, func(c *sandbox.Config) {
		c.Logs, c.LogPrefix, c.Redactor = sink, "logs/ex9/", red
	})
	// A quiet probe (WarmCaches' version probes) ships no log and takes no log number:
	// the user's first command stays exec.ndjson.
	probe, err := sb.Exec(context.Background(), dsl.ExecRequest{Command: "echo probe-output", Quiet: true})
	if err != nil || probe.LogURI != "" || probe.StdoutTail != "probe-output\n" {
		t.Fatalf("quiet exec: %+v %v", probe, err)
	}
	res, err := sb.Exec(context.Background(), dsl.ExecRequest{
		Command: "echo token=$TOKEN; echo leaked $TOKEN >&2; exit 1",
		Env:     map[string]string{"TOKEN": "s3cr3t-value"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.StdoutTail != "token=***\n" || res.StderrTail != "leaked ***\n" {
		t.Fatalf("tails not redacted: %+v", res)
	}
	if res.LogURI != "logs/ex9/exec.ndjson" {
		t.Fatalf("LogURI %q", res.LogURI)
	}
	res2, err := sb.Exec(context.Background(), dsl.ExecRequest{Command: "echo s3cr3t-value-in-command"})
	if err != nil || res2.LogURI != "logs/ex9/exec-2.ndjson" {
		t.Fatalf("second exec: %+v %v", res2, err)
	}

	var all strings.Builder
	for _, k := range st.Keys(t, "logs/ex9/") {
		all.WriteString(st.Get(t, k))
	}
	logs := all.String()
	if strings.Contains(logs, "s3cr3t") {
		t.Fatalf("secret in shipped logs:\n%s", logs)
	}
	for _, want := range []string{
		`{"stream":"meta","command":"echo token=$TOKEN; echo leaked $TOKEN \u003e\u00262; exit 1"}`,
		`{"stream":"stdout","line":"token=***"}`,
		`{"stream":"stderr","line":"leaked ***"}`,
		`{"stream":"exit","exitCode":1,`,
		`{"stream":"meta","command":"echo ***-in-command"}`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	keys := st.Keys(t, "logs/ex9/")
	if len(keys) != 2 || keys[0] != "logs/ex9/exec-2.ndjson.000001" || keys[1] != "logs/ex9/exec.ndjson.000001" {
		t.Fatalf("keys %v", keys)
	}
}

// fullStore is a blob store whose disk is full: every put fails as the embedded
// store's does then (a 5xx the shipper retries).
type fullStore struct{}

func (fullStore) Put(context.Context, string, []byte) error {
	return errors.New("500 InternalError: write: no space left on device")
}

// TestUnstoredLogFailsTheCommandWithStorageFull: a command whose log could not be
// stored reports StorageFull with what was lost, though the command itself passed.
// Before, the loss was only logged and the run succeeded on a log with a hole.
func TestUnstoredLogFailsTheCommandWithStorageFull(t *testing.T) {
	sb := newSandbox(t, func(c *sandbox.Config) {
		c.Logs, c.LogPrefix, c.LogGiveUp = fullStore{}, "logs/exfull/", 20*time.Millisecond
	})
	res, err := sb.Exec(context.Background(), dsl.ExecRequest{Command: "echo hello"})
	var full *dsl.StorageFull
	if !errors.As(err, &full) || full.What != "log exec.ndjson" || full.Lost == 0 || !strings.Contains(full.Cause, "no space left") {
		t.Fatalf("Exec = %+v, %v; want StorageFull", res, err)
	}
	if res.ExitCode != 0 || res.StdoutTail != "hello\n" {
		t.Fatalf("the command's own result is kept: %+v", res)
	}
}

// TestLogNumberingIsAskedAtTheFirstCommandLog: the agent lists the execution's earlier
// logs while the checkout runs; the sandbox asks for the result only when it numbers
// its first command log (a checkout or a quiet probe does not wait for it), once, and
// numbers from it with its quota.
func TestLogNumberingIsAskedAtTheFirstCommandLog(t *testing.T) {
	st := s3test.Start(t)
	sink := logSink(t, st, "ex7")
	src, shas := gitRepo(t, filepath.Join(t.TempDir(), "web"))
	var asked atomic.Int32
	sb := newSandbox(t, func(c *sandbox.Config) {
		c.Logs, c.LogPrefix = sink, "logs/ex7/"
		c.LogNumbering = func() (int, *logship.Quota) {
			asked.Add(1)
			return 4, logship.NewQuota(1<<20, 0)
		}
	})
	ctx := context.Background()
	dir, err := sb.Checkout(ctx, src, shas[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Exec(ctx, dsl.ExecRequest{Dir: dir, Command: "true", Quiet: true}); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("asked %d times before the first command log", n)
	}
	for i, want := range []string{"logs/ex7/exec-4.ndjson", "logs/ex7/exec-5.ndjson"} {
		res, err := sb.Exec(ctx, dsl.ExecRequest{Dir: dir, Command: "echo hi"})
		if err != nil || res.LogURI != want {
			t.Fatalf("command %d: %+v %v; want log %s", i+1, res, err, want)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("asked %d times, want once", n)
	}
}
