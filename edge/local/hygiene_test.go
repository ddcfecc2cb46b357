package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// waitCount waits until countCmdline(cmd) == want, failing after within with a ps.
func waitCount(t *testing.T, cmd string, want int, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for countCmdline(cmd) != want {
		if time.Now().After(deadline) {
			ps, _ := exec.Command("ps", "-eo", "pid,ppid,pgid,sid,stat,cmd").Output()
			t.Fatalf("%s: %d processes %q, want %d\n%s", what, countCmdline(cmd), cmd, want, ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKilledAgentTakesItsCommandsAlongWithoutIsolation: without bubblewrap (a library
// caller, or --no-isolation) kill -9 of the agent in a long command must still end
// the command's whole tree (the shell and the sleep it forked) before the sandbox
// counts as gone. Before, the command had a process group of its own, was
// re-parented to init and kept running beside the restarted attempt.
func TestKilledAgentTakesItsCommandsAlongWithoutIsolation(t *testing.T) {
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: env{}.get, NoIsolation: true,
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	repo, shas := gittest.Repo(t, 1)
	sleep := fmt.Sprintf("sleep 48%d", os.Getpid()%1000+100)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], sleep+"; echo after", nil), "hyg-noiso")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	waitCount(t, sleep, 1, 60*time.Second, "the command to start")
	ws := filepath.Join(local.WorkspacesDir(st.DataDir), edge.SandboxID(edge.SemanticID("offload-test", "local/app", shas[0])))
	agent := pidsOf(t, flareBin+" agent --listen 127.0.0.1:0 --workspace "+ws)
	if len(agent) != 1 {
		t.Fatalf("agent processes of %s: %v", ws, agent)
	}
	if err := syscall.Kill(agent[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitCount(t, sleep, 0, 15*time.Second, "after kill -9 of the agent")
}

// TestSigtermOfFlareUpLeavesNoCommand: `flare up --no-isolation` gets SIGTERM while a
// command runs; once it has exited no process of the command is left. Before, Close
// killed the agent's process group only, and the command's own group survived.
func TestSigtermOfFlareUpLeavesNoCommand(t *testing.T) {
	data := t.TempDir()
	up := flareUpWith(t, data, nil, "--no-isolation")
	sec, err := local.LoadSecrets(data, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	repo, shas := gittest.Repo(t, 1)
	sleep := fmt.Sprintf("sleep 49%d", os.Getpid()%1000+100)
	body, _ := json.Marshal(map[string]any{"run": "offload-test", "github": map[string]any{"repo": "local/app", "sha": shas[0]},
		"inputs": map[string]any{"repo": repo, "sha": shas[0], "command": sleep + "; echo after", "reportOnly": true}})
	r := post(t, up.url+"/v1/dispatch/offload-test", body, map[string]string{"X-FlareDispatch-Signature": edge.SignatureHeader(sec.HMACSecret, body)})
	if r.status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	waitCount(t, sleep, 1, 60*time.Second, "the command to start")
	if err := up.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = up.cmd.Wait()
	if n := countCmdline(sleep); n != 0 {
		ps, _ := exec.Command("ps", "-eo", "pid,ppid,pgid,sid,stat,cmd").Output()
		t.Fatalf("%d commands outlived flare up's SIGTERM\n%s", n, ps)
	}
}
