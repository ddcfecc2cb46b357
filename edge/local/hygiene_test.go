package local_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/proctest"
)

// escapes is a command fragment that leaves two processes in sessions of their own,
// out of the command's process group and the agent's session: `sleep n` started by
// setsid from the command's shell, and `sleep n+1` by a double fork (its parent
// subshell exits at once). It returns their command lines too.
func escapes(t *testing.T, n int) (script string, cmdlines []string) {
	t.Helper()
	cmdlines = []string{fmt.Sprintf("sleep %d", n), fmt.Sprintf("sleep %d", n+1)}
	proctest.KillOnCleanup(t, cmdlines...)
	return fmt.Sprintf("setsid sh -c '%s' >/dev/null 2>&1 & (setsid %s >/dev/null 2>&1 &); ", cmdlines[0], cmdlines[1]), cmdlines
}

// TestSetsidCommandDoesNotOutliveItsRunWithoutIsolation: without bubblewrap, what a
// run's command put in a session of its own (setsid, a double fork) must be gone once
// the run has ended (its end stops the agent; the supervisor, the child subreaper of
// all the agent starts, kills what is left). Before the supervisor both sleeps were
// re-parented to init, escaped the session sweep and ran on: this test failed with
// each still running.
func TestSetsidCommandDoesNotOutliveItsRunWithoutIsolation(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	script, escaped := escapes(t, 4_000_000+(os.Getpid()%10_000)*10)
	// The command ends once released, so the test sees the escapes start first (no
	// isolation: the host's /tmp is the command's).
	release := filepath.Join(t.TempDir(), "release")
	wait := fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done; echo released", release)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], script+wait, nil), "hyg-setsid")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	for _, c := range escaped {
		proctest.Wait(t, c, 1, 60*time.Second, "the escaping processes to start")
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if v := waitDone(t, st, r.body["executionId"].(string), 60*time.Second); v.Execution.Status != "success" {
		t.Fatalf("run: %s %s", v.Execution.Status, v.Check.Summary)
	}
	for _, c := range escaped {
		proctest.Wait(t, c, 0, 20*time.Second, "after the run ended")
	}
}

// TestKilledAgentTakesItsCommandsAlongWithoutIsolation: without bubblewrap (a library
// caller, or --no-isolation) kill -9 of the agent in a long command must still end
// the command's whole tree (the shell and the sleep it forked, and what it put in
// sessions of its own) before the sandbox counts as gone. Before, the command had a
// process group of its own, was re-parented to init and kept running beside the
// restarted attempt; then, until the supervisor, the setsid and double-forked sleeps
// still did (this test failed with each running).
func TestKilledAgentTakesItsCommandsAlongWithoutIsolation(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	sleep := fmt.Sprintf("sleep 48%d", os.Getpid()%1000+100)
	script, escaped := escapes(t, 5_000_000+(os.Getpid()%10_000)*10)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], script+sleep+"; echo after", nil), "hyg-noiso")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	proctest.Wait(t, sleep, 1, 60*time.Second, "the command to start")
	for _, c := range escaped {
		proctest.Wait(t, c, 1, 10*time.Second, "the escaping processes to start")
	}
	ws := filepath.Join(local.WorkspacesDir(st.DataDir), edge.SandboxID(edge.SemanticID("offload-test", "local/app", shas[0])))
	agent := proctest.PIDs(flareBin + " agent --listen 127.0.0.1:0 --workspace " + ws)
	if len(agent) != 1 {
		t.Fatalf("agent processes of %s: %v", ws, agent)
	}
	// The restarted attempt runs the command again: watch the killed one's processes.
	var old []int
	for _, c := range append([]string{sleep}, escaped...) {
		old = append(old, proctest.PIDs(c)...)
	}
	if err := syscall.Kill(agent[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, pid := range old {
		for proctest.Alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d outlived kill -9 of its agent\n%s", pid, proctest.Listing())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestSigtermOfFlareUpLeavesNoCommand: `flare up --no-isolation` gets SIGTERM while a
// command runs; once it has exited no process of the command is left, not even one in
// a session of its own. Before, Close killed the agent's process group only, and the
// command's own group survived; then, until the supervisor, the setsid and
// double-forked sleeps did (this test failed with each running).
// Under SIGKILL flare up cannot close anything: the supervisors' parent-death signal
// (SIGTERM) has each kill its sandbox, shortly after. Before, the agent died by its
// parent-death signal and the command's tree was left running (a known gap).
func TestSigtermOfFlareUpLeavesNoCommand(t *testing.T) {
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			data := t.TempDir()
			up := flareUpWith(t, data, nil, "--no-isolation")
			sec, err := local.LoadSecrets(data, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			repo, shas := gittest.Repo(t, 1)
			sleep := fmt.Sprintf("sleep 49%d%d", i, os.Getpid()%1000+100)
			script, escaped := escapes(t, 6_000_000+(os.Getpid()%10_000)*10+2*i)
			body, _ := json.Marshal(map[string]any{"run": "offload-test", "github": map[string]any{"repo": "local/app", "sha": shas[0]},
				"inputs": map[string]any{"repo": repo, "sha": shas[0], "command": script + sleep + "; echo after", "reportOnly": true}})
			r := post(t, up.url+"/v1/dispatch/offload-test", body, map[string]string{"X-FlareDispatch-Signature": edge.SignatureHeader(sec.HMACSecret, body)})
			if r.status != http.StatusAccepted {
				t.Fatalf("dispatch: %d %s", r.status, r.raw)
			}
			all := append([]string{sleep}, escaped...)
			proctest.KillOnCleanup(t, sleep)
			for _, c := range all {
				proctest.Wait(t, c, 1, 60*time.Second, "the command to start")
			}
			if err := up.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = up.cmd.Wait()
			for _, c := range all {
				if n := proctest.Count(c); sig == syscall.SIGTERM && n != 0 { // Close waited for the sandboxes
					t.Fatalf("%d %q outlived flare up's SIGTERM\n%s", n, c, proctest.Listing())
				}
				proctest.Wait(t, c, 0, 15*time.Second, "after flare up's "+sig.String())
			}
		})
	}
}
