package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
	"github.com/flare-dispatch/flare-dispatch/internal/flarebuild"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// flareBin is the real CLI, built once: the agents are its `flare agent` processes.
var flareBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flare-bin-")
	if err != nil {
		panic(err)
	}
	if flareBin, err = flarebuild.Flare(dir, "flaretest"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type env map[string]string

func (e env) get(k string) string { return e[k] }

// startStack boots a local stack in a temp dir with the given environment.
func startStack(t testing.TB, vars env) *local.Stack {
	t.Helper()
	if vars == nil {
		vars = env{}
	}
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: vars.get,
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(),
		// These tests talk to their commands through files in the host's /tmp (release
		// markers, side counters) and run the host's go and chromium with the host's
		// caches, which a sandbox does not see; the isolation tests use the default.
		NoIsolation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

type response struct {
	status int
	body   map[string]any
	raw    []byte
}

func post(t testing.TB, url string, body []byte, headers map[string]string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func get(t testing.TB, url string) response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// dispatch signs body with the stack's secret and posts it.
func dispatch(t testing.TB, st *local.Stack, run string, body any, key string) response {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"X-FlareDispatch-Signature": edge.SignatureHeader(st.Secrets.HMACSecret, raw), "Content-Type": "application/json"}
	if key != "" {
		h["Idempotency-Key"] = key
	}
	return post(t, st.URL+"/v1/dispatch/"+run, raw, h)
}

func offloadBody(repo, sha, command string, extra map[string]any) map[string]any {
	inputs := map[string]any{"repo": repo, "sha": sha, "command": command}
	for k, v := range extra {
		inputs[k] = v
	}
	return map[string]any{"run": "offload-test", "github": map[string]any{"repo": "local/app", "sha": sha}, "inputs": inputs}
}

type view struct {
	Execution edge.Execution    `json:"execution"`
	Steps     []edge.StepRow    `json:"steps"`
	Summary   json.RawMessage   `json:"summary"`
	Check     *edge.CheckReport `json:"check"`
	Logs      []struct {
		File string `json:"file"`
		URL  string `json:"url"`
	} `json:"logs"`
}

func token(st *local.Stack, id string) string {
	return edge.LogToken(edge.Config{HMACSecret: st.Secrets.HMACSecret}, id)
}

func executionView(t testing.TB, st *local.Stack, id string) view {
	t.Helper()
	r := get(t, st.URL+"/v1/executions/"+id+"?t="+token(st, id))
	if r.status != http.StatusOK {
		t.Fatalf("GET execution %s: %d %s", id, r.status, r.raw)
	}
	var v view
	if err := json.Unmarshal(r.raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// waitDone polls until the execution ends and its check-run is completed.
func waitDone(t testing.TB, st *local.Stack, id string, within time.Duration) view {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		v := executionView(t, st, id)
		if actors.Status(v.Execution.Status).Terminal() && v.Check != nil && v.Check.Status == "completed" {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
	v := executionView(t, st, id)
	t.Fatalf("%s not done after %s: %+v", id, within, v.Execution)
	return v
}

func logsText(t testing.TB, st *local.Stack, id string) string {
	r := get(t, st.URL+"/v1/executions/"+id+"/logs?format=text&t="+token(st, id))
	if r.status != http.StatusOK {
		return ""
	}
	return string(r.raw)
}

func TestOffloadTestRunsARealCommandEndToEnd(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "./test.sh && echo oops >&2", nil), "")
	if r.status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	if want := "offload-test:local_app:" + shas[0][:12]; id != want {
		t.Fatalf("execution id %q, want the semantic id %q", id, want)
	}
	v := waitDone(t, st, id, 60*time.Second)
	if v.Execution.Status != "success" || v.Check.Conclusion != "success" {
		t.Fatalf("status %s conclusion %s: %s", v.Execution.Status, v.Check.Conclusion, v.Check.Summary)
	}
	if !strings.HasPrefix(v.Check.Summary, "✓ offload-test — execution succeeded.") || !strings.Contains(v.Check.Summary, "/logs/") {
		t.Fatalf("summary: %s", v.Check.Summary)
	}
	var out struct{ ExitCode, DurationMs int }
	if err := json.Unmarshal(v.Summary, &out); err != nil || out.ExitCode != 0 {
		t.Fatalf("output %s (%v)", v.Summary, err)
	}
	names := []string{}
	for _, s := range v.Steps {
		names = append(names, s.Name+"="+s.Status)
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "checkout=success") || !strings.Contains(got, "exec=success") {
		t.Fatalf("steps %s", got)
	}
	text := logsText(t, st, id)
	for _, want := range []string{"$ ./test.sh && echo oops >&2", "tests pass", "[stderr] oops"} {
		if !strings.Contains(text, want) {
			t.Fatalf("logs lack %q:\n%s", want, text)
		}
	}
	// A replay is the same execution, and nothing new runs.
	again := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "./test.sh && echo oops >&2", nil), "")
	if again.status != http.StatusAccepted || again.body["executionId"] != id || again.body["deduped"] != true {
		t.Fatalf("replay: %d %s", again.status, again.raw)
	}
}

func TestFailingCommandIsRedUnlessReportOnly(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "echo boom >&2; exit 3", nil), "red-1")
	v := waitDone(t, st, r.body["executionId"].(string), 60*time.Second)
	if v.Execution.Status != "failure" || v.Check.Conclusion != "failure" {
		t.Fatalf("status %s conclusion %s", v.Execution.Status, v.Check.Conclusion)
	}
	if !strings.Contains(v.Check.Summary, "✗ offload-test — execution failed.") || !strings.Contains(v.Check.Summary, "boom") || !strings.Contains(v.Check.Summary, "3") {
		t.Fatalf("summary lacks the failure: %s", v.Check.Summary)
	}
	r = dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "exit 3", map[string]any{"reportOnly": true}), "green-1")
	v = waitDone(t, st, r.body["executionId"].(string), 60*time.Second)
	if v.Execution.Status != "success" || !strings.Contains(string(v.Summary), `"exitCode":3`) {
		t.Fatalf("reportOnly: status %s output %s", v.Execution.Status, v.Summary)
	}
}

func TestLogLinesAreReadableWhileTheCommandRuns(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	marker := filepath.Join(t.TempDir(), "release")
	cmd := fmt.Sprintf("echo first-line; while [ ! -f %s ]; do sleep 0.1; done; echo second-line", marker)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], cmd, nil), "live-1")
	id := r.body["executionId"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logsText(t, st, id), "first-line") {
		if time.Now().After(deadline) {
			t.Fatalf("first line never readable; logs:\n%s", logsText(t, st, id))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := executionView(t, st, id).Execution.Status; s != "running" {
		t.Fatalf("status %s while the command waits", s)
	}
	os.WriteFile(marker, nil, 0o644)
	v := waitDone(t, st, id, 30*time.Second)
	if v.Execution.Status != "success" || !strings.Contains(logsText(t, st, id), "second-line") {
		t.Fatalf("status %s logs:\n%s", v.Execution.Status, logsText(t, st, id))
	}
}

func TestDispatchRejectsBadInputWithTheField(t *testing.T) {
	st := startStack(t, nil)
	good := offloadBody("/repo", "abc1234", "true", nil)
	raw, _ := json.Marshal(good)
	sign := func(b []byte) map[string]string {
		return map[string]string{"X-FlareDispatch-Signature": edge.SignatureHeader(st.Secrets.HMACSecret, b)}
	}
	mutated := append([]byte{}, raw...)
	mutated[len(mutated)-2] = ' '
	cases := []struct {
		name   string
		path   string
		body   []byte
		hdr    map[string]string
		status int
		code   string
		field  string
	}{
		{"mutated body", "offload-test", mutated, sign(raw), 401, "unauthorized", ""},
		{"no signature", "offload-test", raw, map[string]string{}, 401, "unauthorized", ""},
		{"short mac", "offload-test", raw, map[string]string{"X-FlareDispatch-Signature": "sha256=abcd"}, 401, "unauthorized", ""},
		{"unsigned unknown run", "nope", raw, map[string]string{}, 401, "unauthorized", ""},
		{"signed unknown run", "nope", raw, sign(raw), 404, "run_not_found", ""},
		{"not json", "offload-test", []byte("{"), sign([]byte("{")), 400, "invalid_body", ""},
		{"run differs from path", "offload-test", mustJSON(map[string]any{"run": "other", "github": good["github"], "inputs": good["inputs"]}), nil, 400, "invalid_body", "run"},
		{"installation negative", "offload-test", mustJSON(map[string]any{"run": "offload-test", "github": map[string]any{"repo": "a/b", "sha": "abc", "installation_id": -1}, "inputs": good["inputs"]}), nil, 400, "invalid_body", "github.installation_id"},
		{"repo not owner/name", "offload-test", mustJSON(map[string]any{"run": "offload-test", "github": map[string]any{"repo": "nope", "sha": "abc1234"}, "inputs": good["inputs"]}), nil, 400, "invalid_body", "github.repo"},
		{"missing command", "offload-test", mustJSON(map[string]any{"run": "offload-test", "github": good["github"], "inputs": map[string]any{"repo": "/r", "sha": "abc1234"}}), nil, 400, "invalid_inputs", "inputs.command"},
		{"wrong type", "offload-test", mustJSON(map[string]any{"run": "offload-test", "github": good["github"], "inputs": map[string]any{"repo": "/r", "sha": "abc1234", "command": "x", "timeoutSec": "soon"}}), nil, 400, "invalid_inputs", "inputs.timeoutSec"},
		{"unknown input", "offload-test", mustJSON(map[string]any{"run": "offload-test", "github": good["github"], "inputs": map[string]any{"repo": "/r", "sha": "abc1234", "command": "x", "bogus": 1}}), nil, 400, "invalid_inputs", "inputs.bogus"},
		{"bad idempotency key", "offload-test", raw, map[string]string{"Idempotency-Key": "a b"}, 400, "invalid_idempotency_key", "Idempotency-Key"},
		{"oversized", "offload-test", bytes.Repeat([]byte("x"), 3<<20), nil, 413, "body_too_large", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.hdr // nil: signed; otherwise exactly these headers (plus a signature for Idempotency-Key cases)
			if h == nil || h["Idempotency-Key"] != "" {
				s := sign(c.body)
				for k, v := range h {
					s[k] = v
				}
				h = s
			}
			r := post(t, st.URL+"/v1/dispatch/"+c.path, c.body, h)
			if r.status != c.status || r.body["error"] != c.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.raw, c.status, c.code)
			}
			if c.field != "" && r.body["field"] != c.field {
				t.Fatalf("field %v, want %s (%s)", r.body["field"], c.field, r.raw)
			}
			if c.status == 401 && r.body["dispatcher_secret_fingerprint"] != edge.Fingerprint(st.Secrets.HMACSecret) {
				t.Fatalf("401 without the fingerprint: %s", r.raw)
			}
		})
	}
	// Nothing was written by any of them.
	var n int
	if err := st.Meta.DB.QueryRow(`SELECT COUNT(*) FROM executions`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d executions written by rejected dispatches (%v)", n, err)
	}
	if r := get(t, st.URL+"/health"); r.status != 200 || r.body["status"] != "ok" {
		t.Fatalf("health: %d %s", r.status, r.raw)
	}
	if r := post(t, st.URL+"/health", nil, nil); r.status != 405 || r.body["error"] != "method_not_allowed" {
		t.Fatalf("POST /health: %d %s", r.status, r.raw)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestLogAccessNeedsTheToken(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "echo hi", nil), "tok-1")
	id := r.body["executionId"].(string)
	waitDone(t, st, id, 60*time.Second)
	for _, c := range []struct {
		url    string
		status int
	}{
		{"/v1/executions/" + id, 403},
		{"/v1/executions/" + id + "?t=wrong", 403},
		{"/v1/executions/" + id + "/logs?t=" + token(st, "tok-2"), 403},
		{"/v1/executions/a%20b?t=x", 400},
		{"/v1/executions/" + id + "/logs/..%2Fsecrets.json?t=" + token(st, id), 400},
		{"/v1/executions/nope-404?t=" + token(st, "nope-404"), 404},
		{"/v1/executions/" + id + "/logs/exec.ndjson?t=" + token(st, id), 200},
	} {
		if got := get(t, st.URL+c.url); got.status != c.status {
			t.Errorf("GET %s: %d, want %d (%s)", c.url, got.status, c.status, got.raw)
		}
	}
}

func TestCancelNeedsTheAdminTokenAndStopsTheRun(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "sleep 60", nil), "cancel-1")
	id := r.body["executionId"].(string)
	for executionView(t, st, id).Execution.Status != "running" {
		time.Sleep(50 * time.Millisecond)
	}
	if got := post(t, st.URL+"/v1/executions/"+id+"/cancel", nil, map[string]string{"Authorization": "Bearer wrong"}); got.status != 401 {
		t.Fatalf("cancel with a wrong token: %d", got.status)
	}
	got := post(t, st.URL+"/v1/executions/"+id+"/cancel", nil, map[string]string{"Authorization": "Bearer " + st.Secrets.AdminToken})
	if got.status != 202 {
		t.Fatalf("cancel: %d %s", got.status, got.raw)
	}
	v := waitDone(t, st, id, 20*time.Second)
	if v.Execution.Status != "cancelled" || v.Check.Conclusion != "cancelled" {
		t.Fatalf("status %s conclusion %s", v.Execution.Status, v.Check.Conclusion)
	}
}

func TestKilledAgentIsRestartedAndTheRunFinishes(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	counter := filepath.Join(t.TempDir(), "attempts")
	// The command counts its starts outside the workspace; the first start waits to be killed.
	cmd := fmt.Sprintf(`echo x >> %s; if [ "$(wc -l < %s)" -eq 1 ]; then sleep 60; fi; echo done`, counter, counter)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], cmd, nil), "kill-agent-1")
	id := r.body["executionId"].(string)
	for {
		b, _ := os.ReadFile(counter)
		if len(b) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	sandbox := edge.SandboxID(edge.SemanticID("offload-test", "local/app", shas[0]))
	if !st.Procs.Kill(sandbox) {
		t.Fatalf("no agent running for sandbox %s", sandbox)
	}
	v := waitDone(t, st, id, 90*time.Second)
	if v.Execution.Status != "success" {
		t.Fatalf("status %s after the agent was killed: %s", v.Execution.Status, v.Check.Summary)
	}
	b, _ := os.ReadFile(counter)
	if n := strings.Count(string(b), "x"); n != 2 {
		t.Fatalf("command started %d times, want 2 (killed once, retried once)", n)
	}
	if !strings.Contains(v.Check.Summary, "succeeded") {
		t.Fatalf("summary %s", v.Check.Summary)
	}
}

func TestAdmissionCapHoldsInsideTheSandboxes(t *testing.T) {
	st := startStack(t, env{"ADMISSION_CAP": "2"})
	repo, shas := gittest.Repo(t, 8)
	dir := t.TempDir()
	// Each command bumps a counter under a lock, records it, sleeps, then lowers it.
	cmd := fmt.Sprintf(`( flock 9; n=$(cat %[1]s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/n; echo $n >> %[1]s/seen ) 9>%[1]s/lock; sleep 0.4; ( flock 9; n=$(cat %[1]s/n); echo $((n-1)) > %[1]s/n ) 9>%[1]s/lock`, dir)
	var ids []string
	for i, sha := range shas {
		r := dispatch(t, st, "offload-test", offloadBody(repo, sha, cmd, nil), fmt.Sprintf("cap-%d", i))
		if r.status != 202 {
			t.Fatalf("dispatch %d: %d %s", i, r.status, r.raw)
		}
		ids = append(ids, r.body["executionId"].(string))
	}
	for _, id := range ids {
		if v := waitDone(t, st, id, 120*time.Second); v.Execution.Status != "success" {
			t.Fatalf("%s: %s %s", id, v.Execution.Status, v.Check.Summary)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "seen"))
	seen := strings.Fields(string(b))
	if len(seen) != len(shas) {
		t.Fatalf("%d commands ran, want %d", len(seen), len(shas))
	}
	for _, s := range seen {
		if s != "1" && s != "2" {
			t.Fatalf("%s commands ran at once with ADMISSION_CAP=2 (seen %v)", s, seen)
		}
	}
}

func TestCheckRunsReachGitHubWithAppCredentials(t *testing.T) {
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation("acme/app")
	repo, shas := gittest.Repo(t, 1)
	gh.AddCommitSHA("acme/app", shas[0])
	st := startStack(t, env{"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_APP_PRIVATE_KEY": string(app.PrivateKeyPEM), "GITHUB_API_URL": gh.URL()})
	body := offloadBody(repo, shas[0], "echo hello", nil)
	body["github"] = map[string]any{"repo": "acme/app", "sha": shas[0], "installation_id": inst}
	r := dispatch(t, st, "offload-test", body, "")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	v := waitDone(t, st, id, 60*time.Second)
	runs := gh.CheckRuns("acme/app")
	if len(runs) != 1 {
		t.Fatalf("%d check-runs on GitHub, want 1: %+v", len(runs), runs)
	}
	cr := runs[0]
	if cr.Name != "flare-dispatch/offload-test" || cr.HeadSHA != shas[0] || cr.Status != "completed" || cr.Conclusion != "success" {
		t.Fatalf("check-run %+v", cr)
	}
	if !strings.HasPrefix(cr.Summary, "✓ offload-test — execution succeeded.") || !strings.Contains(cr.DetailsURL, "/logs/") {
		t.Fatalf("summary %q details %q", cr.Summary, cr.DetailsURL)
	}
	if v.Execution.CheckRunID != cr.ID {
		t.Fatalf("executions.check_run_id = %d, want %d", v.Execution.CheckRunID, cr.ID)
	}
}
