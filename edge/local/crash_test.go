package local_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/proctest"
)

// upProcess is a real `flare up` process.
type upProcess struct {
	cmd *exec.Cmd
	url string
}

func flareUp(t *testing.T, data string) *upProcess {
	t.Helper()
	// The journal probe writes beside the stack (its counter file), which a sandbox cannot.
	return flareUpWith(t, data, nil, "--no-isolation")
}

// flareUpWith starts `flare up` with extra environment and flags.
func flareUpWith(t *testing.T, data string, env []string, flags ...string) *upProcess {
	t.Helper()
	cmd := exec.Command(flareBin, append([]string{"up", "--addr", "127.0.0.1:0", "--data", data}, flags...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if l, err := local.FindStack(data); err == nil && l.PID == cmd.Process.Pid {
			return &upProcess{cmd: cmd, url: l.URL}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("flare up did not write its lock file")
	return nil
}

// agentPIDs lists live `flare agent` processes whose workspace is data's.
func agentPIDs(data string) []int {
	return proctest.Live(func(cmd string) bool {
		return strings.Contains(cmd, " agent ") && strings.Contains(cmd, local.WorkspacesDir(data))
	})
}

// TestKillNineOfFlareUpMidRun kills `flare up` with SIGKILL while a step runs,
// deletes the workspace, and starts it again: no agent outlives the kill, the run
// finishes, completed steps are not re-run (counted outside the workspace) and log
// lines flushed before the kill are kept.
func TestKillNineOfFlareUpMidRun(t *testing.T) {
	data := t.TempDir()
	side := t.TempDir()
	counter, marker := filepath.Join(side, "counter"), filepath.Join(side, "marker")
	up := flareUp(t, data)
	sec, err := local.LoadSecrets(data, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"run": "journal-probe", "github": map[string]any{"repo": "local/probe", "sha": "0123456789ab"},
		"inputs": map[string]any{"counter": counter, "marker": marker}})
	r := post(t, up.url+"/v1/dispatch/journal-probe", body, map[string]string{"X-FlareDispatch-Signature": edge.SignatureHeader(sec.HMACSecret, body)})
	if r.status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	tok := edge.LogToken(edge.Config{HMACSecret: sec.HMACSecret}, id)
	logs := func(url string) string {
		g := get(t, url+"/v1/executions/"+id+"/logs?format=text&t="+tok)
		return string(g.raw)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs(up.url), "b-started") {
		if time.Now().After(deadline) {
			t.Fatalf("step b never logged its first line: %s", logs(up.url))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(agentPIDs(data)) == 0 {
		t.Fatal("no agent process found while the step runs")
	}

	if err := up.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = up.cmd.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for len(agentPIDs(data)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("agents outlived flare up: %v", agentPIDs(data))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.RemoveAll(local.WorkspacesDir(data)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	up = flareUp(t, data)
	deadline = time.Now().Add(90 * time.Second)
	var status string
	for time.Now().Before(deadline) {
		g := get(t, up.url+"/v1/executions/"+id+"?t="+tok)
		var v struct {
			Execution edge.Execution `json:"execution"`
		}
		_ = json.Unmarshal(g.raw, &v)
		if status = v.Execution.Status; status == "success" || status == "failure" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status != "success" {
		t.Fatalf("status %q after the restart", status)
	}
	got, _ := os.ReadFile(counter)
	if string(got) != "a\nc\n" {
		t.Fatalf("side effects %q, want step a once and step c once", got)
	}
	text := logs(up.url)
	if strings.Count(text, "\nb-started\n") != 2 || !strings.Contains(text, "\nb-done\n") {
		t.Fatalf("logs should keep the first attempt's flushed line and show the second's:\n%s", text)
	}
}
