package local_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// TestMissingAgentBinaryFailsRunsPromptly (issue 15): a pool whose sandboxes cannot
// start (here the agent binary does not exist, as a Container class or image would be
// missing on Cloudflare) ends each run with SandboxStartFailed after its bounded
// retries (2 + 4 + 8 s), and frees its slot: with ADMISSION_CAP=1 the second run gets
// the slot and fails the same way. Without the refused-start report each would hold
// the slot for three boot graces (270 s) and end AgentLost, which the 60 s bound here
// does not allow.
func TestMissingAgentBinaryFailsRunsPromptly(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-flare")
	vars := env{"ADMISSION_CAP": "1"}
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: vars.get,
		AgentCommand: []string{missing, "agent"}, Runs: runs.Registry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	for _, id := range []string{"nostart-1", "nostart-2"} {
		if r := dispatch(t, st, "offload-test", offloadBody("local/app", "0123456789abcdef0123456789abcdef01234567", "true", nil), id); r.status != 202 {
			t.Fatalf("dispatch %s: %d %s", id, r.status, r.raw)
		}
	}
	for _, id := range []string{"nostart-1", "nostart-2"} {
		v := waitDone(t, st, id, 60*time.Second)
		if v.Execution.Status != "failure" || v.Check == nil ||
			!strings.Contains(v.Check.Summary, "The sandbox could not start") || !strings.Contains(v.Check.Summary, "no-such-flare") ||
			!strings.Contains(v.Check.Summary, "To fix") {
			t.Fatalf("%s: %s\n%+v", id, v.Execution.Status, v.Check)
		}
	}
}
