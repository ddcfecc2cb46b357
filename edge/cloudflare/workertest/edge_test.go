//go:build !js

package workertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/blobs"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
	"github.com/flare-dispatch/flare-dispatch/internal/ci"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
	"github.com/flare-dispatch/flare-dispatch/internal/flarebuild"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/testruns"
	"github.com/flare-dispatch/flare-dispatch/internal/webhookexamples"
)

// The proof: the real edge in the Worker under `wrangler dev`, offline, with
// the agents of a local supervisor (`flare agent-supervisor`, the AGENT_URL the
// sandbox classes forward to) running real runs on a real git repository. The same
// scenario as edge/local/local_test.go.

const (
	hmacSecret = "worker-test-hmac-secret-0123456789"
	adminToken = "worker-test-admin-token"
	hookSecret = "worker-test-webhook-secret"
)

type stack struct {
	*Worker
	sup  *Supervisor
	cfg  edge.Config
	gh   *fakegithub.Fake
	inst int64 // the fake GitHub App's installation on acme/app
}

// startEdge builds flare (-tags flaretest: its agents know the test runs), starts the
// supervisor and the Worker with its D1 migrated.
func startEdge(t *testing.T, vars map[string]string) *stack {
	t.Helper()
	return startEdgeWith(t, vars, nil)
}

// startEdgeWith is startEdge with KV keys put first (Options.KV).
func startEdgeWith(t *testing.T, vars map[string]string, kv map[string]map[string]string) *stack {
	t.Helper()
	ci.SkipShort(t, "starts wrangler dev and agents")
	root := Require(t)
	flare, err := flarebuild.Flare(t.TempDir(), "flaretest")
	if err != nil {
		t.Fatal(err)
	}
	sup, err := StartSupervisor(t.Context(), flare, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A fake GitHub (the real REST protocol) for the App's check-runs; the key goes
	// in as one line, as a secret pasted into a single-line variable would.
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation("acme/app")
	all := map[string]string{"HMAC_SECRET": hmacSecret, "ADMIN_TOKEN": adminToken, "FLARE_TEST_RUNS": "true",
		"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_API_URL": gh.URL(),
		"GITHUB_APP_PRIVATE_KEY": strings.ReplaceAll(string(app.PrivateKeyPEM), "\n", `\n`)}
	for k, v := range vars {
		all[k] = v
	}
	w, err := Start(t.Context(), root, Options{PersistDir: t.TempDir(), AgentURL: sup.URL, Vars: all, Migrate: true, KV: kv})
	if err != nil {
		sup.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Stop()
		sup.Stop()
		if t.Failed() || os.Getenv("FLARE_WORKER_LOGS") != "" {
			t.Logf("--- wrangler dev output ---\n%s\n--- supervisor and agents ---\n%s", w.Logs(), sup.Logs())
		}
	})
	return &stack{Worker: w, sup: sup, cfg: edge.Config{HMACSecret: hmacSecret}, gh: gh, inst: inst}
}

type reply struct {
	status int
	body   map[string]any
	raw    []byte
}

func (s *stack) do(t *testing.T, method, path string, body []byte, headers map[string]string) reply {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := reply{status: res.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func offloadBody(repo, sha, command string) []byte {
	b, _ := json.Marshal(map[string]any{"run": "offload-test", "github": map[string]any{"repo": "local/app", "sha": sha},
		"inputs": map[string]any{"repo": repo, "sha": sha, "command": command}})
	return b
}

// dispatch signs body with the Worker's secret (as the GitHub Action does) and posts it.
func (s *stack) dispatch(t *testing.T, run string, body []byte, key string) reply {
	t.Helper()
	h := map[string]string{"X-FlareDispatch-Signature": edge.SignatureHeader(hmacSecret, body), "Content-Type": "application/json"}
	if key != "" {
		h["Idempotency-Key"] = key
	}
	r := s.do(t, http.MethodPost, "/v1/dispatch/"+run, body, h)
	// workerd answers this when it reloads the isolate while a request is in flight;
	// a client (the Action) retries a 5xx, and a dispatch is idempotent.
	if r.status == http.StatusServiceUnavailable && strings.Contains(string(r.raw), "restarted mid-request") {
		t.Logf("dispatch %s: workerd restarted mid-request; retrying once", run)
		r = s.do(t, http.MethodPost, "/v1/dispatch/"+run, body, h)
	}
	return r
}

type view struct {
	Execution edge.Execution    `json:"execution"`
	Steps     []edge.StepRow    `json:"steps"`
	Summary   json.RawMessage   `json:"summary"`
	Check     *edge.CheckReport `json:"check"`
	Logs      []struct {
		File string `json:"file"`
	} `json:"logs"`
}

func (s *stack) view(t *testing.T, id string) (view, int) {
	t.Helper()
	r := s.do(t, http.MethodGet, "/v1/executions/"+url.PathEscape(id)+"?t="+edge.LogToken(s.cfg, id), nil, nil)
	var v view
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.raw, &v); err != nil {
			t.Fatalf("execution %s: %v: %s", id, err, r.raw)
		}
	}
	return v, r.status
}

// waitDone polls GET /v1/executions/:id until the execution ended and its check-run
// report is completed.
func (s *stack) waitDone(t *testing.T, id string, within time.Duration) view {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, code := s.view(t, id)
		if code == http.StatusOK && actors.Status(v.Execution.Status).Terminal() && v.Check != nil && v.Check.Status == "completed" {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not done after %s: %d %+v", id, within, code, v.Execution)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *stack) logs(t *testing.T, id string) string {
	t.Helper()
	r := s.do(t, http.MethodGet, "/v1/executions/"+url.PathEscape(id)+"/logs?format=text&t="+edge.LogToken(s.cfg, id), nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("logs of %s: %d %s", id, r.status, r.raw)
	}
	return string(r.raw)
}

func TestWorkerServesTheEdgeEndToEnd(t *testing.T) {
	s := startEdge(t, map[string]string{"ADMISSION_CAP": "2", "GITHUB_WEBHOOK_SECRET": hookSecret,
		"EMAIL_FROM": "ci@flare.example", "EMAIL_FROM_NAME": "Flare", "EMAIL_ALLOWED_RECIPIENTS": "dev@example.com"})
	repo, shas := gittest.Repo(t, 50)

	t.Run("FailedRunEmailsThroughSendEmail", func(t *testing.T) {
		// The send_email binding under wrangler dev (miniflare) parses the message as
		// Email Routing would (Message-ID, From matching the envelope), stores it as a
		// .eml file and logs its path. The refused address comes first: without the
		// allow-list its message would be the first one logged.
		var body map[string]any
		json.Unmarshal(offloadBody(repo, shas[45], "echo broken >&2; exit 4"), &body)
		body["notify"] = map[string]any{"emails": []string{"evil@attacker.example", "dev@example.com"}}
		raw, _ := json.Marshal(body)
		r := s.dispatch(t, "offload-test", raw, "email-notify")
		if r.status != http.StatusAccepted {
			t.Fatalf("dispatch: %d %s", r.status, r.raw)
		}
		if v := s.waitDone(t, "email-notify", 90*time.Second); v.Execution.Status != "failure" {
			t.Fatalf("status %s", v.Execution.Status)
		}
		const said = "send_email binding called with the following message:"
		var logs string
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs, said) && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond) // polling wrangler's output for the line
			logs = s.Logs()
		}
		files := regexp.MustCompile(regexp.QuoteMeta(said)+`\S*\s+(\S+\.eml)`).FindAllStringSubmatch(logs, -1)
		if len(files) != 1 {
			t.Fatalf("%d messages sent, want 1:\n%s", len(files), logs)
		}
		eml, err := os.ReadFile(files[0][1])
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(eml))
		if err != nil {
			t.Fatal(err)
		}
		subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if msg.Header.Get("To") != "<dev@example.com>" || subject != "[FlareDispatch] offload-test — ✗ failed" {
			t.Fatalf("to %q subject %q", msg.Header.Get("To"), subject)
		}
	})

	t.Run("OffloadTestRunsARealCommand", func(t *testing.T) {
		r := s.dispatch(t, "offload-test", offloadBody(repo, shas[0], "./test.sh && echo oops >&2"), "")
		if r.status != http.StatusAccepted {
			t.Fatalf("dispatch: %d %s", r.status, r.raw)
		}
		id := r.body["executionId"].(string)
		if want := "offload-test:local_app:" + shas[0][:12]; id != want {
			t.Fatalf("execution id %q, want %q", id, want)
		}
		v := s.waitDone(t, id, 90*time.Second)
		if v.Execution.Status != "success" || v.Check.Conclusion != "success" {
			t.Fatalf("status %s conclusion %s: %s", v.Execution.Status, v.Check.Conclusion, v.Check.Summary)
		}
		if !strings.HasPrefix(v.Check.Summary, "✓ offload-test — execution succeeded.") {
			t.Fatalf("summary: %s", v.Check.Summary)
		}
		// The steps are D1 rows, projected by the run actor's effects.
		var steps []string
		for _, st := range v.Steps {
			steps = append(steps, st.Name+"="+st.Status)
		}
		if got := strings.Join(steps, ","); !strings.Contains(got, "checkout=success") || !strings.Contains(got, "exec=success") {
			t.Fatalf("steps %s", got)
		}
		var out struct{ ExitCode int }
		if err := json.Unmarshal(v.Summary, &out); err != nil || out.ExitCode != 0 {
			t.Fatalf("output %s (%v)", v.Summary, err)
		}
		// The agent shipped its NDJSON segments to R2 through the Worker's S3 endpoint;
		// the edge reads them back through the R2 binding.
		if len(v.Logs) == 0 {
			t.Fatal("no log files listed")
		}
		text := s.logs(t, id)
		for _, want := range []string{"$ ./test.sh && echo oops >&2", "tests pass", "[stderr] oops"} {
			if !strings.Contains(text, want) {
				t.Fatalf("logs lack %q:\n%s", want, text)
			}
		}
		// The viewer's events stream of the finished run (what `flare run` and the page
		// follow): its lines rendered in the Worker's build, then the end.
		ev := s.do(t, http.MethodGet, "/logs/"+url.PathEscape(id)+"?format=events&t="+edge.LogToken(s.cfg, id), nil, map[string]string{"Accept": "text/event-stream"})
		for _, want := range []string{`"k":"cmd"`, `"k":"out","h":"tests pass","t":"tests pass"`,
			`"k":"err","h":"oops","t":"oops"`, "event: end\ndata: \"success\""} {
			if ev.status != http.StatusOK || !strings.Contains(string(ev.raw), want) {
				t.Fatalf("events stream (%d) lacks %s:\n%s", ev.status, want, ev.raw)
			}
		}
	})

	t.Run("BrowserCDPRefusesWithoutUpgradeTokenOrLiveAttempt", func(t *testing.T) {
		// After the upgrade and token checks, an attempt that is not running is 409
		// (browser_test.go passes a live one through).
		if r := s.do(t, http.MethodGet, "/v1/browser/cdp", nil, nil); r.status != http.StatusUpgradeRequired {
			t.Fatalf("no upgrade: %d %s", r.status, r.raw)
		}
		ws := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
		if r := s.do(t, http.MethodGet, "/v1/browser/cdp?token=nope", nil, ws); r.status != http.StatusUnauthorized {
			t.Fatalf("bad token: %d %s", r.status, r.raw)
		}
		u := edge.BrowserCDPURL(edge.Config{HMACSecret: hmacSecret}, s.URL, edge.AgentClaims{Exec: "cdp-check", Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()})
		if r := s.do(t, http.MethodGet, "/v1/browser/cdp"+u[strings.Index(u, "?"):], nil, ws); r.status != http.StatusConflict {
			t.Fatalf("no such attempt: %d %s", r.status, r.raw)
		}
	})

	t.Run("ReplayedDispatchIsTheSameExecution", func(t *testing.T) {
		r := s.dispatch(t, "offload-test", offloadBody(repo, shas[0], "./test.sh && echo oops >&2"), "")
		if r.status != http.StatusAccepted || r.body["executionId"] != "offload-test:local_app:"+shas[0][:12] || r.body["deduped"] != true {
			t.Fatalf("replay: %d %s", r.status, r.raw)
		}
	})

	t.Run("BadSignatureIs401AndWritesNothing", func(t *testing.T) {
		body := offloadBody(repo, shas[1], "true")
		for name, h := range map[string]map[string]string{
			"none":    {},
			"wrong":   {"X-FlareDispatch-Signature": edge.SignatureHeader("another-secret", body)},
			"mutated": {"X-FlareDispatch-Signature": edge.SignatureHeader(hmacSecret, append([]byte(" "), body...))},
		} {
			r := s.do(t, http.MethodPost, "/v1/dispatch/offload-test", body, h)
			if r.status != http.StatusUnauthorized || r.body["error"] != "unauthorized" ||
				r.body["dispatcher_secret_fingerprint"] != edge.Fingerprint(hmacSecret) {
				t.Fatalf("%s signature: %d %s", name, r.status, r.raw)
			}
		}
		if _, code := s.view(t, edge.SemanticID("offload-test", "local/app", shas[1])); code != http.StatusNotFound {
			t.Fatalf("an unauthorized dispatch left an execution: %d", code)
		}
	})

	t.Run("CheckRunsReachGitHubWithAppCredentials", func(t *testing.T) {
		// The Worker's GitHub App client (ghapp, on the fetch transport) against a fake
		// GitHub on the host: the check-run is created in progress and completed.
		s.gh.AddCommitSHA("acme/app", shas[2])
		var body map[string]any
		json.Unmarshal(offloadBody(repo, shas[2], "echo hello"), &body)
		body["github"] = map[string]any{"repo": "acme/app", "sha": shas[2], "installation_id": s.inst}
		raw, _ := json.Marshal(body)
		r := s.dispatch(t, "offload-test", raw, "")
		if r.status != http.StatusAccepted {
			t.Fatalf("dispatch: %d %s", r.status, r.raw)
		}
		id := r.body["executionId"].(string)
		v := s.waitDone(t, id, 90*time.Second)
		runs := s.gh.CheckRuns("acme/app")
		if len(runs) != 1 {
			t.Fatalf("%d check-runs on GitHub, want 1: %+v", len(runs), runs)
		}
		cr := runs[0]
		if cr.Name != "flare-dispatch/offload-test" || cr.HeadSHA != shas[2] || cr.Status != "completed" || cr.Conclusion != "success" ||
			!strings.HasPrefix(cr.Summary, "✓ offload-test — execution succeeded.") || !strings.Contains(cr.DetailsURL, "/logs/") {
			t.Fatalf("check-run %+v", cr)
		}
		if v.Execution.CheckRunID != cr.ID {
			t.Fatalf("executions.check_run_id = %d, want %d", v.Execution.CheckRunID, cr.ID)
		}

		// "Re-run all checks" on that commit: check_suite rerequested, through D1's
		// listing by commit, runs it again and reports to a second check-run.
		suite := webhookexamples.With(webhookexamples.Load("check_suite.rerequested.1"), "repository.full_name", "acme/app",
			"check_suite.head_sha", shas[2], "installation.id", s.inst)
		rr := s.do(t, http.MethodPost, "/v1/webhooks/github", suite, map[string]string{"X-GitHub-Event": "check_suite", "X-GitHub-Delivery": "suite-1",
			"X-Hub-Signature-256": edge.SignatureHeader(hookSecret, suite), "Content-Type": "application/json"})
		list, _ := rr.body["dispatched"].([]any)
		want := id + ":rerun-" + fmt.Sprint(cr.ID)
		if rr.status != http.StatusAccepted || len(list) != 1 || list[0].(map[string]any)["executionId"] != want {
			t.Fatalf("check_suite rerequested: %d %s", rr.status, rr.raw)
		}
		s.waitDone(t, want, 90*time.Second)
		if runs := s.gh.CheckRuns("acme/app"); len(runs) != 2 || runs[1].Status != "completed" || runs[1].Conclusion != "success" || runs[1].ID == cr.ID {
			t.Fatalf("check-runs after the re-run: %+v", runs)
		}
	})

	t.Run("WebhookDeliveriesMakeOneExecution", func(t *testing.T) {
		// A real deployment_status payload; deploy-smoke declares its trigger.
		const smokeID = "deploy-smoke:Codertocat_Hello-World:145988746"
		inst := s.gh.AddInstallation("Codertocat/Hello-World")
		s.gh.AddCommitSHA("Codertocat/Hello-World", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/" || r.URL.Path == "/health" || r.URL.Path == "/api/status" {
				w.Write([]byte("ok"))
				return
			}
			http.NotFound(w, r)
		}))
		defer app.Close()
		body := webhookexamples.With(webhookexamples.Load("deployment_status.created.4"),
			"deployment_status.environment_url", app.URL, "installation.id", inst)
		hook := func(delivery, sig string) reply {
			h := map[string]string{"X-GitHub-Event": "deployment_status", "X-GitHub-Delivery": delivery,
				"X-Hub-Signature-256": sig, "Content-Type": "application/json"}
			if delivery == "" {
				delete(h, "X-GitHub-Delivery")
			}
			return s.do(t, http.MethodPost, "/v1/webhooks/github", body, h)
		}
		good := edge.SignatureHeader(hookSecret, body)
		if r := hook("d-bad", edge.SignatureHeader("wrong", body)); r.status != http.StatusUnauthorized {
			t.Fatalf("bad signature: %d %s", r.status, r.raw)
		}
		if r := hook("", good); r.status != http.StatusBadRequest || r.body["error"] != "missing_delivery_id" {
			t.Fatalf("no delivery id: %d %s", r.status, r.raw)
		}
		// 100 concurrent deliveries: half one delivery redelivered, half distinct ones.
		var wg sync.WaitGroup
		var mu sync.Mutex
		created, accepted := 0, 0
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				delivery := "redelivered"
				if i%2 == 1 {
					delivery = fmt.Sprintf("delivery-%d", i)
				}
				r := hook(delivery, good)
				mu.Lock()
				defer mu.Unlock()
				if r.status == http.StatusAccepted {
					accepted++
				}
				list, _ := r.body["dispatched"].([]any)
				for _, d := range list {
					if d.(map[string]any)["deduped"] != true {
						created++
					}
				}
			}()
		}
		wg.Wait()
		if accepted != 100 || created != 1 {
			t.Fatalf("%d of 100 deliveries accepted, %d created an execution (want 100 and 1)", accepted, created)
		}
		v := s.waitDone(t, smokeID, 90*time.Second)
		if v.Execution.Status != "success" || !strings.Contains(string(v.Summary), `"checked":3`) {
			t.Fatalf("deploy-smoke %s output %s", v.Execution.Status, v.Summary)
		}
	})

	t.Run("CronTickDispatchesTheScheduledRunOnce", func(t *testing.T) {
		// wrangler dev --test-scheduled: GET /__scheduled?cron=… runs scheduled().
		tick := func() {
			r := s.do(t, http.MethodGet, "/__scheduled?cron="+url.QueryEscape(testruns.Cron), nil, nil)
			if r.status != http.StatusOK {
				t.Fatalf("__scheduled: %d %s", r.status, r.raw)
			}
		}
		tick()
		tick()
		var ticks []struct {
			Cron  string       `json:"cron"`
			At    time.Time    `json:"at"`
			Fired []edge.Fired `json:"fired"`
		}
		getJSON(t, s.Worker, "/__dev/scheduled", &ticks)
		if len(ticks) != 2 || len(ticks[0].Fired) != 1 || len(ticks[1].Fired) != 1 {
			t.Fatalf("ticks %+v", ticks)
		}
		first, second := ticks[0].Fired[0], ticks[1].Fired[0]
		id := "test-scheduled:" + ticks[0].At.Format("2006-01-02")
		if first.Run != "test-scheduled" || first.ExecutionID != id || first.Deduped || first.Skipped != "" {
			t.Fatalf("first tick fired %+v, want a new %s", first, id)
		}
		if ticks[1].At.Format("2006-01-02") == ticks[0].At.Format("2006-01-02") && (!second.Deduped || second.ExecutionID != id) {
			t.Fatalf("second tick of the same day fired %+v, want %s deduped", second, id)
		}
		v := s.waitDone(t, id, 90*time.Second)
		if v.Execution.Status != "success" || v.Execution.Repo != "schedule/unknown" {
			t.Fatalf("scheduled run: status %s repo %s", v.Execution.Status, v.Execution.Repo)
		}
		if text := s.logs(t, id); !strings.Contains(text, "fired at "+ticks[0].At.Format("2006-01-02")) {
			t.Fatalf("scheduled run's logs:\n%s", text)
		}
	})

	t.Run("ARuntimeCrashMidRunLosesNothing", func(t *testing.T) {
		// The Go runtime dies while a run's command is running: the effects queued in
		// it are gone, the run actor's state is not (Durable Object storage). The next
		// message reloads the actor with Recover, which re-emits its projections; the
		// agent's calls that hit the dead runtime (503) are retried.
		marker := filepath.Join(t.TempDir(), "release")
		cmd := fmt.Sprintf("echo before; while [ ! -f %s ]; do sleep 0.1; done; echo after", marker)
		r := s.dispatch(t, "offload-test", offloadBody(repo, shas[3], cmd), "crash-1")
		if r.status != http.StatusAccepted {
			t.Fatalf("dispatch: %d %s", r.status, r.raw)
		}
		id := r.body["executionId"].(string)
		deadline := time.Now().Add(60 * time.Second)
		for {
			if v, code := s.view(t, id); code == http.StatusOK && v.Execution.Status == "running" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the run never started")
			}
			time.Sleep(100 * time.Millisecond)
		}
		var before, after health
		getJSON(t, s.Worker, "/__dev/health", &before)
		if code, b := get(t, s.Worker, "/__dev/crash"); code != http.StatusServiceUnavailable {
			t.Fatalf("crash: %d %s", code, b)
		}
		os.WriteFile(marker, nil, 0o644)
		v := s.waitDone(t, id, 90*time.Second)
		getJSON(t, s.Worker, "/__dev/health", &after)
		if after.Instance == before.Instance {
			t.Fatal("the runtime did not restart")
		}
		if v.Execution.Status != "success" || !strings.Contains(s.logs(t, id), "after") {
			t.Fatalf("after the crash: status %s, logs:\n%s", v.Execution.Status, s.logs(t, id))
		}
	})

	t.Run("AdmissionCapHoldsInsideTheSandboxes", func(t *testing.T) {
		// 50 dispatches at once, each on its own commit (its own sandbox, its own agent):
		// with ADMISSION_CAP=2 no more than 2 commands may run at any moment. Each
		// command counts itself in and out under a lock, outside the sandboxes.
		dir := t.TempDir()
		cmd := fmt.Sprintf(`( flock 9; n=$(cat %[1]s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/n; echo $n >> %[1]s/seen ) 9>%[1]s/lock; sleep 0.3; ( flock 9; n=$(cat %[1]s/n); echo $((n-1)) > %[1]s/n ) 9>%[1]s/lock`, dir)
		ids := make([]string, len(shas))
		var wg sync.WaitGroup
		errs := make(chan string, len(shas))
		for i, sha := range shas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := s.dispatch(t, "offload-test", offloadBody(repo, sha, cmd), fmt.Sprintf("cap-%02d", i))
				if r.status != http.StatusAccepted {
					errs <- fmt.Sprintf("dispatch %d: %d %s", i, r.status, r.raw)
					return
				}
				ids[i] = r.body["executionId"].(string)
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
		for _, id := range ids {
			if v := s.waitDone(t, id, 5*time.Minute); v.Execution.Status != "success" {
				t.Fatalf("%s: %s %s", id, v.Execution.Status, v.Check.Summary)
			}
		}
		b, _ := os.ReadFile(filepath.Join(dir, "seen"))
		seen := strings.Fields(string(b))
		if len(seen) != len(shas) {
			t.Fatalf("%d commands ran, want %d", len(seen), len(shas))
		}
		most := "0"
		for _, n := range seen {
			if n != "1" && n != "2" {
				t.Fatalf("%s commands ran at once with ADMISSION_CAP=2 (seen %v)", n, seen)
			}
			most = max(most, n)
		}
		t.Logf("50 runs, at most %s at once", most)
	})

	t.Run("S3EndpointHoldsTheBlobsContract", func(t *testing.T) {
		// The agents' S3 endpoint (/s3 on the Worker, R2 behind it) with a credential
		// scoped to one execution's prefixes, driven by the SDK-based edge/blobs client.
		// The execution must be live: an ended (or unknown) one's credentials write
		// nothing (s3verify). It sleeps until cancelled below.
		r := s.dispatch(t, "offload-test", offloadBody(repo, shas[4], "sleep 600"), "s3-contract")
		if r.status != http.StatusAccepted || r.body["executionId"] != "s3-contract" {
			t.Fatalf("dispatch: %d %s", r.status, r.raw)
		}
		defer s.do(t, http.MethodPost, "/v1/executions/s3-contract/cancel", nil, map[string]string{"Authorization": "Bearer " + adminToken})
		key, secret, err := blobcred.Mint(edge.BlobRoot(s.cfg), "s3-contract", blobcred.ExecGrants("s3-contract", "local/app", false), time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		porttest.Blobs(t, func(t *testing.T) edge.Blobs {
			c, err := blobs.New(s.URL+"/s3", "flare-dispatch-runs", key, secret, nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, porttest.WithPrefix("logs/s3-contract/"))
	})
}
