package sandboxes_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/edge/local/sandboxes"
	"github.com/flare-dispatch/flare-dispatch/internal/proctest"
)

// escape is what the fake agent of a sandbox named "escape-N" does before it listens:
// it starts `sleep N` in a session of its own (setsid) as its child, and `sleep N+1`
// by a double fork into a session of its own (orphaned at once), both outside the
// agent's session and process group. Other sandboxes start nothing.
func escape(sandbox string) error {
	n, ok := strings.CutPrefix(sandbox, "escape-")
	if !ok {
		return nil
	}
	a, err := strconv.Atoi(n)
	if err != nil {
		return err
	}
	script := fmt.Sprintf("setsid sh -c 'sleep %d' >/dev/null 2>&1 & (setsid sleep %d >/dev/null 2>&1 &)", a, a+1)
	return exec.Command("sh", "-c", script).Run()
}

// TestSetsidDoesNotOutliveAnUnisolatedSandbox: without isolation, a process the agent
// started in a session of its own, directly or by a double fork, must be gone once the
// sandbox is, whether Procs stops the agent or the agent is killed (-9) under it.
// Before the supervisor (Supervise, the agent's child subreaper) both sleeps were
// re-parented to init, out of reach of the session sweep, and this failed in both
// subtests with the sleeps still running.
func TestSetsidDoesNotOutliveAnUnisolatedSandbox(t *testing.T) {
	for i, how := range []string{"stop", "kill -9 of the agent"} {
		t.Run(how, func(t *testing.T) {
			root := t.TempDir()
			p := &sandboxes.Procs{Command: []string{os.Args[0]}, Root: root}
			t.Cleanup(p.Close)
			n := 3_000_000 + (os.Getpid()%10_000)*10 + 2*i
			sb := fmt.Sprintf("escape-%d", n)
			if err := p.Start(context.Background(), sb, "lean", agentapi.Start{Exec: "e1", Attempt: 1}); err != nil {
				t.Fatal(err)
			}
			direct, forked := fmt.Sprintf("sleep %d", n), fmt.Sprintf("sleep %d", n+1)
			proctest.KillOnCleanup(t, direct, forked) // what a failure leaves
			proctest.Wait(t, direct, 1, 20*time.Second, "the setsid child to start")
			proctest.Wait(t, forked, 1, 20*time.Second, "the double-forked child to start")
			if i == 0 {
				p.Kill(sb)
			} else {
				agent := proctest.PIDs(os.Args[0] + " --listen 127.0.0.1:0 --workspace " + filepath.Join(root, sb))
				if len(agent) == 0 {
					t.Fatal("no agent process")
				}
				if err := syscall.Kill(agent[0], syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			proctest.Wait(t, direct, 0, 20*time.Second, "after "+how)
			proctest.Wait(t, forked, 0, 20*time.Second, "after "+how)
		})
	}
}
