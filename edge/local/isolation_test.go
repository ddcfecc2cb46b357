package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/edge/local/sandboxes"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/proctest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// needIsolation fails (under CI) or skips the test when bubblewrap does not work here.
func needIsolation(t *testing.T) {
	t.Helper()
	if err := sandboxes.CheckIsolation(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// TestHostileCommandSeesNoSecrets runs a real `flare up` (isolated, the default) with
// its secrets in its environment, and a real command that goes looking for them: the
// data directory relative to its workspace and by absolute path, the environment of
// flare up's process and of pid 1. None of the secrets may appear in the run's log.
// With --no-isolation the absolute path printed secrets.json (this test failed), and
// before the workspaces moved out of the data directory so did ../../../secrets.json.
func TestHostileCommandSeesNoSecrets(t *testing.T) {
	needIsolation(t)
	const hmac, admin = "hmac-secret-must-not-leak-4242", "admin-token-must-not-leak-4343"
	data := t.TempDir()
	up := flareUpWith(t, data, []string{"HMAC_SECRET=" + hmac, "ADMIN_TOKEN=" + admin}, isolationFlags...)
	sec, err := local.LoadSecrets(data, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	repo, shas := gittest.Repo(t, 1)
	cmd := fmt.Sprintf(`id; cat ../secrets.json ../../secrets.json ../../../secrets.json; cat %[1]s/secrets.json; ls -la %[1]s;
cat /proc/%[2]d/environ; cat /proc/1/environ; ls /proc; echo; echo probe-finished`, data, up.cmd.Process.Pid)
	body, _ := json.Marshal(map[string]any{"run": "offload-test", "github": map[string]any{"repo": "local/app", "sha": shas[0]},
		"inputs": map[string]any{"repo": repo, "sha": shas[0], "command": cmd, "reportOnly": true}})
	r := post(t, up.url+"/v1/dispatch/offload-test", body, map[string]string{"X-FlareDispatch-Signature": edge.SignatureHeader(hmac, body)})
	if r.status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	tok := edge.LogToken(edge.Config{HMACSecret: hmac}, id)
	var text string
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(text, "probe-finished") {
		if time.Now().After(deadline) {
			v := get(t, up.url+"/v1/executions/"+id+"?t="+tok)
			t.Fatalf("the probe did not run to its end: %s\n%s", v.raw, text)
		}
		time.Sleep(100 * time.Millisecond)
		text = string(get(t, up.url+"/v1/executions/"+id+"/logs?format=text&t="+tok).raw)
	}
	view := string(get(t, up.url+"/v1/executions/"+id+"?t="+tok).raw)
	for name, secret := range map[string]string{"HMAC_SECRET": hmac, "ADMIN_TOKEN": admin,
		"stored HMAC_SECRET": sec.HMACSecret, "stored ADMIN_TOKEN": sec.AdminToken,
		"BLOB_ADMIN_SECRET": sec.BlobSecret, "BLOB_ADMIN_KEY_ID": sec.BlobKeyID} {
		if strings.Contains(text, secret) || strings.Contains(view, secret) {
			t.Errorf("%s reached the run's log or outputs:\n%s", name, text)
		}
	}
	if os.Getuid() == 0 && !strings.Contains(text, "uid=65534") {
		t.Errorf("the command did not run as nobody:\n%s", text)
	}
}

// isolationFlags are flare up's flags in TestHostileCommandSeesNoSecrets; a variable
// so that the test can be checked to fail with "--no-isolation".
var isolationFlags = []string{}

// TestKilledAgentTakesItsCommandsAlong kills -9 the agent of one of two runs at
// ADMISSION_CAP=2, each in a long command. Counted from outside, the killed agent's
// command must be gone once its sandbox is (the PID namespace dies with the agent),
// the restarted attempt must finish, and after Close no command of either run is
// left. Without the sandbox the command was re-parented to init and kept running
// beside the restarted attempt (3 commands at cap 2).
func TestKilledAgentTakesItsCommandsAlong(t *testing.T) {
	needIsolation(t)
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: env{"ADMISSION_CAP": "2"}.get, // isolated: the default
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	repo, shas := gittest.Repo(t, 2)
	token := fmt.Sprintf("sleep 47%d", os.Getpid()%1000+100) // unique to this test process
	var ids []string
	for i, sha := range shas {
		// The first attempt marks its workspace and sleeps; the restarted one finds the mark.
		ws := filepath.Join(local.WorkspacesDir(st.DataDir), edge.SandboxID(edge.SemanticID("offload-test", "local/app", sha)))
		cmd := fmt.Sprintf(`if [ -e %[1]s/started ]; then echo second-attempt; else touch %[1]s/started; %[2]s; fi`, ws, token)
		r := dispatch(t, st, "offload-test", offloadBody(repo, sha, cmd, nil), fmt.Sprintf("hyg-%d", i))
		if r.status != 202 {
			t.Fatalf("dispatch: %d %s", r.status, r.raw)
		}
		ids = append(ids, r.body["executionId"].(string))
	}
	deadline := time.Now().Add(60 * time.Second)
	for proctest.Count(token) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 commands running", proctest.Count(token))
		}
		time.Sleep(20 * time.Millisecond)
	}
	ws := filepath.Join(local.WorkspacesDir(st.DataDir), edge.SandboxID(edge.SemanticID("offload-test", "local/app", shas[0])))
	agent := proctest.PIDs(flareBin + " agent --listen 127.0.0.1:0 --workspace " + ws)
	if len(agent) != 1 {
		t.Fatalf("agent processes of %s: %v", ws, agent)
	}
	if err := syscall.Kill(agent[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for proctest.Count(token) != 1 {
		if n := proctest.Count(token); n > 2 || time.Now().After(deadline) {
			t.Fatalf("%d commands running after the agent was killed, want 1 (the other run's)\n%s", n, proctest.Listing())
		}
		time.Sleep(10 * time.Millisecond)
	}
	v := waitDone(t, st, ids[0], 90*time.Second)
	if v.Execution.Status != "success" || !strings.Contains(logsText(t, st, ids[0]), "second-attempt") {
		t.Fatalf("the restarted attempt: %s %s", v.Execution.Status, v.Check.Summary)
	}
	if n := proctest.Count(token); n > 1 {
		t.Fatalf("%d commands after the restarted attempt finished, want only the other run's", n)
	}
	if err := st.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := proctest.Count(token); n != 0 {
		t.Fatalf("%d commands outlived Close", n)
	}
}
