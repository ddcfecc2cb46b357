package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// TestIdleAgentIsReapedWithItsWorkspace runs one command with a short idle bound:
// once the run is done, its agent must stop and its workspace go. A run still going
// past the bound is not reaped (the agent reports its attempt). Before reaping, every
// (run, repo, sha) left an agent and a workspace for the life of the stack.
func TestIdleAgentIsReapedWithItsWorkspace(t *testing.T) {
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: env{}.get, AgentIdle: 300 * time.Millisecond,
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
	ws := filepath.Join(local.WorkspacesDir(st.DataDir), edge.SandboxID(edge.SemanticID("offload-test", "local/app", shas[0])))
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := os.Stat(ws)
		if errors.Is(err, os.ErrNotExist) && st.Procs.Running() <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle agent not reaped: %d agents, workspace %s: %v", st.Procs.Running(), ws, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The long run (sleeping past the bound) was not reaped: it finishes.
	if v := waitDone(t, st, long.body["executionId"].(string), 60*time.Second); v.Execution.Status != "success" {
		t.Fatalf("the long run was cut: %s %s", v.Execution.Status, v.Check.Summary)
	}
}
