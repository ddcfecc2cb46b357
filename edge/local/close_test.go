package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// TestCloseLeavesNoAgentRunningWithStartsQueued queues agent starts, as the actors
// do, just before Close. Close must perform them (their workspaces exist) and still
// leave no agent running: agents are stopped after the effect queue. When Close
// stopped the agents first, the queued starts respawned agents that outlived it, and
// this test failed.
func TestCloseLeavesNoAgentRunningWithStartsQueued(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "sleep 30", nil), "close-1")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	const starts = 6
	for i := range starts {
		local.QueueEffect(st, actors.RunAddr(id), actors.StartAgent{Exec: id, Run: "offload-test", Attempt: 100 + i,
			Sandbox: fmt.Sprintf("close-%d", i), Pool: "default"})
	}
	if err := st.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := st.Procs.Running(); n != 0 {
		t.Fatalf("%d agents still running after Close", n)
	}
	for i := range starts {
		if _, err := os.Stat(filepath.Join(local.WorkspacesDir(st.DataDir), fmt.Sprintf("close-%d", i))); err != nil {
			t.Errorf("queued start %d was not performed by Close: %v", i, err)
		}
	}
}

// TestCloseReportsWhatItCouldNotDo closes with a context that has already ended, with
// agent starts queued: Close drops them and says so (the error used to be dropped and
// Close returned nil), and still stops everything after the failed step.
func TestCloseReportsWhatItCouldNotDo(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "sleep 30", nil), "close-2")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	for i := range 6 {
		local.QueueEffect(st, actors.RunAddr(id), actors.StartAgent{Exec: id, Run: "offload-test", Attempt: 100 + i,
			Sandbox: fmt.Sprintf("late-%d", i), Pool: "default"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := st.Close(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "close effects") {
		t.Fatalf("Close = %v, want the effects it dropped reported", err)
	}
	if n := st.Procs.Running(); n != 0 {
		t.Fatalf("%d agents still running after a failed Close", n)
	}
	if _, err := os.Stat(local.LockPath(st.DataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file left behind: %v", err)
	}
}
