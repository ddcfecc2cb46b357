package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// TestIdleAgentIsReaped runs one command with a short idle bound and
// --keep-workspace: once the run is done its agent must stop, and the workspace stay
// (kept for debugging). A run still going past the bound is not reaped (the agent
// reports its attempt). Before reaping, every (run, repo, sha) left an agent for the
// life of the stack.
func TestIdleAgentIsReaped(t *testing.T) {
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: env{}.get, AgentIdle: 300 * time.Millisecond, KeepWorkspaces: true,
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	repo, shas := gittest.Repo(t, 2)
	long := dispatch(t, st, "offload-test", offloadBody(repo, shas[1], "sleep 2; echo slept", nil), "reap-long")
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "echo hi", nil), "reap-1")
	if v := waitDone(t, st, r.body["executionId"].(string), 60*time.Second); v.Execution.Status != "success" {
		t.Fatalf("run: %s", v.Execution.Status)
	}
	deadline := time.Now().Add(20 * time.Second)
	for st.Procs.Running() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("idle agent not reaped: %d agents", st.Procs.Running())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ws := filepath.Join(local.WorkspacesDir(st.DataDir), edge.SandboxID(edge.SemanticID("offload-test", "local/app", shas[0])))
	if _, err := os.Stat(ws); err != nil {
		t.Fatalf("--keep-workspace: the workspace went: %v", err)
	}
	// The long run (sleeping past the bound) was not reaped: it finishes.
	if v := waitDone(t, st, long.body["executionId"].(string), 60*time.Second); v.Execution.Status != "success" {
		t.Fatalf("the long run was cut: %s %s", v.Execution.Status, v.Check.Summary)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestManyRunsLeaveNoAgentsOrWorkspaces runs distinct (run, repo, sha) one after
// another (FLARE_REAP_RUNS of them, default 40) with the idle reaper out of the way
// (an hour): each run's end must stop its agent and remove its workspace, so agents,
// workspaces and the stack's open files stay flat. Before, every commit left an agent
// (~19 MB, ~5 fds) and a workspace clone for the life of the stack (this test failed
// with 40 agents and 40 workspaces).
func TestManyRunsLeaveNoAgentsOrWorkspaces(t *testing.T) {
	n := 40
	if v, err := strconv.Atoi(os.Getenv("FLARE_REAP_RUNS")); err == nil && v > 0 {
		n = v
	}
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: env{}.get, AgentIdle: time.Hour,
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	repo, shas := gittest.Repo(t, n)
	settle := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			entries, err := os.ReadDir(local.WorkspacesDir(st.DataDir))
			if st.Procs.Running() == 0 && (errors.Is(err, os.ErrNotExist) || len(entries) == 0) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d agents and %d workspaces left after the runs ended", st.Procs.Running(), len(entries))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var fds0 int
	start := time.Now()
	for i, sha := range shas {
		r := dispatch(t, st, "offload-test", offloadBody(repo, sha, "echo run-"+strconv.Itoa(i), nil), fmt.Sprintf("many-%d", i))
		if r.status != 202 {
			t.Fatalf("dispatch %d: %d %s", i, r.status, r.raw)
		}
		if v := waitDone(t, st, r.body["executionId"].(string), 60*time.Second); v.Execution.Status != "success" {
			t.Fatalf("run %d: %s %s", i, v.Execution.Status, v.Check.Summary)
		}
		if i == 1 { // after the first run warmed up the stack's connections
			settle()
			fds0 = openFDs(t)
		}
	}
	settle()
	fds := openFDs(t)
	t.Logf("%d runs in %s; open fds %d after run 2, %d at the end", n, time.Since(start).Round(time.Millisecond), fds0, fds)
	if fds > fds0+8 {
		t.Fatalf("open fds grew from %d to %d over %d runs", fds0, fds, n)
	}
}
