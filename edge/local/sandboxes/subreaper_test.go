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

// countCmdline counts the live processes whose command line is s.
func countCmdline(s string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")) != s {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
			continue
		}
		n++
	}
	return n
}

// pidOf is a live process whose command line is s, or 0.
func pidOf(s string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err == nil && strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")) == s && !strings.Contains(string(st), ") Z ") {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	return 0
}

func waitCount(t *testing.T, cmdline string, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for countCmdline(cmdline) != want {
		if time.Now().After(deadline) {
			ps, _ := exec.Command("ps", "-eo", "pid,ppid,pgid,sid,stat,cmd").Output()
			t.Fatalf("%s: %d processes %q, want %d\n%s", what, countCmdline(cmdline), cmdline, want, ps)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
			t.Cleanup(func() { // what a failure leaves
				for _, c := range []string{direct, forked} {
					for pid := pidOf(c); pid != 0; pid = pidOf(c) {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						waitCount(t, c, 0, "cleanup")
					}
				}
			})
			waitCount(t, direct, 1, "the setsid child to start")
			waitCount(t, forked, 1, "the double-forked child to start")
			if i == 0 {
				p.Kill(sb)
			} else {
				agent := pidOf(os.Args[0] + " --listen 127.0.0.1:0 --workspace " + filepath.Join(root, sb))
				if agent == 0 {
					t.Fatal("no agent process")
				}
				if err := syscall.Kill(agent, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			waitCount(t, direct, 0, "after "+how)
			waitCount(t, forked, 0, "after "+how)
		})
	}
}
