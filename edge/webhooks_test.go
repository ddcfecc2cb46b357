package edge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/internal/webhookexamples"
)

const whSecret = "It's a Secret to Everybody"

type smokeIn struct {
	BaseURL string `json:"baseURL"`
	SHA     string `json:"sha"`
}

type prIn struct {
	Repo string `json:"repo"`
	SHA  string `json:"sha"`
}

// testRuns are runs with triggers, as the real ones declare them.
func testRuns() dsl.Registry {
	body := func(c *dsl.Ctx, in smokeIn) (struct{}, error) { return struct{}{}, nil }
	prBody := func(c *dsl.Ctx, in prIn) (struct{}, error) { return struct{}{}, nil }
	spec := func(name string, tr ...dsl.Trigger) dsl.Spec {
		return dsl.Spec{Name: name, Version: "1.0.0", MaxDuration: time.Minute, Triggers: tr}
	}
	prInputs := func(e *dsl.WebhookEvent) any { return prIn{Repo: e.Repo(), SHA: e.HeadSHA()} }
	return dsl.NewRegistry(
		dsl.Define(spec("smoke", dsl.Trigger{
			Event: "deployment_status", Actions: []string{"created"},
			Gate: func(e *dsl.WebhookEvent) bool {
				return e.String("deployment_status.state") == "success" && e.String("deployment_status.environment") == "production" &&
					e.String("deployment_status.environment_url") != ""
			},
			IdempotencyKey: func(e *dsl.WebhookEvent) string {
				return fmt.Sprintf("smoke:%s:%d", strings.ReplaceAll(e.Repo(), "/", "_"), e.Int("deployment.id"))
			},
			Inputs: func(e *dsl.WebhookEvent) any {
				return smokeIn{BaseURL: e.String("deployment_status.environment_url"), SHA: e.HeadSHA()}
			},
		}), body),
		dsl.Define(spec("pr", dsl.Trigger{
			Event: "pull_request", Actions: []string{"opened", "synchronize", "reopened"},
			IdempotencyKey: func(e *dsl.WebhookEvent) string { return dsl.SemanticKey("pr", e.Repo(), e.HeadSHA()) },
			Inputs:         prInputs,
		}), prBody),
		dsl.Define(spec("panicky", dsl.Trigger{
			Event:          "pull_request",
			Gate:           func(e *dsl.WebhookEvent) bool { panic("gate bug") },
			IdempotencyKey: func(e *dsl.WebhookEvent) string { return "never" },
			Inputs:         prInputs,
		}), prBody),
		dsl.Define(spec("bad-inputs", dsl.Trigger{
			Event: "pull_request", Actions: []string{"opened"},
			IdempotencyKey: func(e *dsl.WebhookEvent) string { return dsl.SemanticKey("bad-inputs", e.Repo(), e.HeadSHA()) },
			Inputs:         func(e *dsl.WebhookEvent) any { return map[string]any{"repo": 7} },
		}), prBody),
	)
}

type fixture struct {
	srv    *edge.Server
	kv     *memKV
	meta   *memMeta
	actors *fakeActors
}

func newFixture(t *testing.T, cfg edge.Config, tweak ...func(*edge.Deps)) *fixture {
	t.Helper()
	f := &fixture{kv: newKV(), meta: newMeta(), actors: newActors()}
	if cfg.HMACSecret == "" {
		cfg.HMACSecret = "hmac"
	}
	cfg.PublicOrigin = "https://runs.test"
	d := edge.Deps{Config: cfg, Runs: testRuns(), Actors: f.actors, Meta: f.meta, KV: f.kv}
	for _, fn := range tweak {
		fn(&d)
	}
	f.srv = edge.New(d)
	return f
}

type reply struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func (f *fixture) do(req *http.Request) reply {
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, req)
	r := reply{status: w.Code, raw: w.Body.String(), header: w.Header()}
	_ = json.Unmarshal(w.Body.Bytes(), &r.body)
	return r
}

func (f *fixture) deliver(event, delivery string, body []byte) reply {
	req := httptest.NewRequest(http.MethodPost, "/v1/webhooks/github", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", edge.SignatureHeader(whSecret, body))
	req.Header.Set("Content-Type", "application/json")
	return f.do(req)
}

func dispatched(r reply) []string {
	var out []string
	list, _ := r.body["dispatched"].([]any)
	for _, d := range list {
		m := d.(map[string]any)
		out = append(out, m["run"].(string)+"="+m["executionId"].(string))
	}
	return out
}

func skipped(r reply) []string {
	var out []string
	list, _ := r.body["skipped"].([]any)
	for _, d := range list {
		m := d.(map[string]any)
		out = append(out, m["run"].(string)+":"+m["reason"].(string))
	}
	return out
}

func TestWebhookIsOffUntilTheSecretIsSet(t *testing.T) {
	f := newFixture(t, edge.Config{})
	r := f.deliver("ping", "d-1", webhookexamples.Load("ping.none.1"))
	if r.status != http.StatusServiceUnavailable || r.body["error"] != "webhook_not_configured" ||
		r.body["message"] != "GITHUB_WEBHOOK_SECRET is unset; Webhook mode is off on this deploy" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

func TestWebhookRejectsBadSignaturesAndMissingHeaders(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	body := webhookexamples.Load("pull_request.opened.1")
	send := func(mut func(*http.Request)) reply {
		req := httptest.NewRequest(http.MethodPost, "/v1/webhooks/github", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "pull_request")
		req.Header.Set("X-GitHub-Delivery", "d-1")
		req.Header.Set("X-Hub-Signature-256", edge.SignatureHeader(whSecret, body))
		mut(req)
		return f.do(req)
	}
	cases := []struct {
		name   string
		mut    func(*http.Request)
		status int
		code   string
	}{
		{"no signature", func(r *http.Request) { r.Header.Del("X-Hub-Signature-256") }, 401, "unauthorized"},
		{"sha1 signature", func(r *http.Request) { r.Header.Set("X-Hub-Signature-256", "sha1=00") }, 401, "unauthorized"},
		{"other secret", func(r *http.Request) { r.Header.Set("X-Hub-Signature-256", edge.SignatureHeader("nope", body)) }, 401, "unauthorized"},
		{"mutated body", func(r *http.Request) {
			b := append(bytes.Clone(body), ' ')
			r.Body = http.NoBody
			*r = *httptest.NewRequest(http.MethodPost, "/v1/webhooks/github", bytes.NewReader(b))
			r.Header.Set("X-GitHub-Event", "pull_request")
			r.Header.Set("X-GitHub-Delivery", "d-1")
			r.Header.Set("X-Hub-Signature-256", edge.SignatureHeader(whSecret, body))
		}, 401, "unauthorized"},
		{"no delivery", func(r *http.Request) { r.Header.Del("X-GitHub-Delivery") }, 400, "missing_delivery_id"},
		{"no event", func(r *http.Request) { r.Header.Del("X-GitHub-Event") }, 400, "missing_event"},
		{"delivery not an id", func(r *http.Request) { r.Header.Set("X-GitHub-Delivery", "a:b/c") }, 400, "invalid_delivery_id"},
	}
	for _, c := range cases {
		r := send(c.mut)
		if r.status != c.status || r.body["error"] != c.code {
			t.Errorf("%s: %d %s", c.name, r.status, r.raw)
		}
	}
	if r := send(func(*http.Request) {}); r.status != http.StatusAccepted {
		t.Fatalf("good delivery: %d %s", r.status, r.raw)
	}
	// Nothing refused started anything or was remembered.
	if n := len(f.actors.started); n != 1 {
		t.Fatalf("%d executions started", n)
	}
}

func TestWebhookRejectsInvalidJSONAfterTheSignature(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	r := f.deliver("push", "d-1", []byte(`{"ref":`))
	if r.status != 400 || r.body["error"] != "invalid_json" || r.body["detail"] == nil {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

func TestWebhookEvaluatesEveryTriggerOnRealPayloads(t *testing.T) {
	for _, ex := range webhookexamples.All() {
		f := newFixture(t, edge.Config{WebhookSecret: whSecret})
		r := f.deliver(ex.Event, "d-"+strings.ReplaceAll(ex.Name, ".", "-"), ex.Body)
		if r.status != http.StatusAccepted || r.body["event"] != ex.Event {
			t.Fatalf("%s: %d %s", ex.Name, r.status, r.raw)
		}
		got := strings.Join(dispatched(r), ",")
		skips := strings.Join(skipped(r), ",")
		var want, wantSkips string
		switch {
		case ex.Event == "pull_request" && (ex.Action == "opened"):
			var ev struct {
				PullRequest struct{ Head struct{ SHA string } } `json:"pull_request"`
				Repository  struct {
					FullName string `json:"full_name"`
				}
			}
			json.Unmarshal(ex.Body, &ev)
			want = "pr=" + dsl.SemanticKey("pr", ev.Repository.FullName, ev.PullRequest.Head.SHA)
			wantSkips = "bad-inputs:invalid_inputs,panicky:trigger_failed"
		case ex.Event == "pull_request" && (ex.Action == "synchronize" || ex.Action == "reopened"):
			want, wantSkips = "pr=", "panicky:trigger_failed"
		case ex.Event == "pull_request":
			wantSkips = "panicky:trigger_failed"
		case ex.Event == "deployment_status":
			wantSkips = "smoke:gate" // no environment_url in GitHub's examples
		}
		if !strings.HasPrefix(got, want) || (want == "" && got != "") {
			t.Errorf("%s: dispatched %q, want %q", ex.Name, got, want)
		}
		if want == "" && got != "" {
			t.Errorf("%s: dispatched %q", ex.Name, got)
		}
		if skips != wantSkips {
			t.Errorf("%s: skipped %q, want %q", ex.Name, skips, wantSkips)
		}
		if r.body["skipped"] != nil && len(r.body["skipped"].([]any)) == 0 {
			t.Errorf("%s: empty skipped list present", ex.Name)
		}
	}
}

func TestWebhookDispatchesTheDeploySmokeShapedTrigger(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	body := webhookexamples.With(webhookexamples.Load("deployment_status.created.4"),
		"deployment_status.environment_url", "https://app.example.com")
	r := f.deliver("deployment_status", "d-1", body)
	if got := dispatched(r); len(got) != 1 || got[0] != "smoke=smoke:Codertocat_Hello-World:145988746" {
		t.Fatalf("dispatched %v (%s)", got, r.raw)
	}
	p := f.meta.params("smoke:Codertocat_Hello-World:145988746")
	if p.Repo != "Codertocat/Hello-World" || p.SHA != "f95f852bd8fca8fcc58a9a2d6c842781e32a215e" || p.InstallationID != 1 ||
		p.Ref != "refs/heads/main" || p.Origin != "https://runs.test" || string(p.Inputs) != `{"baseURL":"https://app.example.com","sha":"f95f852bd8fca8fcc58a9a2d6c842781e32a215e"}` {
		t.Fatalf("params %+v inputs %s", p, p.Inputs)
	}
	// A failed (or in_progress) deployment fires nothing.
	for _, state := range []string{"failure", "in_progress"} {
		b := webhookexamples.With(body, "deployment_status.state", state)
		if r := f.deliver("deployment_status", "d-"+state, b); len(dispatched(r)) != 0 {
			t.Fatalf("%s dispatched %v", state, dispatched(r))
		}
	}
}

func TestWebhookRedeliveryIsDedupedAfterFanOut(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	body := webhookexamples.Load("pull_request.opened.1")
	first := f.deliver("pull_request", "72d3162e-cc78-11e3-81ab-4c9367dc0958", body)
	if first.status != 202 || len(dispatched(first)) != 1 {
		t.Fatalf("first: %d %s", first.status, first.raw)
	}
	if f.kv.get("gh-delivery:72d3162e-cc78-11e3-81ab-4c9367dc0958") != "1" {
		t.Fatal("delivery not recorded")
	}
	again := f.deliver("pull_request", "72d3162e-cc78-11e3-81ab-4c9367dc0958", body)
	if again.status != 202 || again.body["deduped"] != true || again.body["deliveryId"] != "72d3162e-cc78-11e3-81ab-4c9367dc0958" ||
		again.body["event"] != "pull_request" || again.body["dispatched"] != nil {
		t.Fatalf("redelivery: %d %s", again.status, again.raw)
	}
	// Another delivery of the same logical work collapses on the execution id.
	other := f.deliver("pull_request", "d-2", body)
	if list := other.body["dispatched"].([]any); len(list) != 1 || list[0].(map[string]any)["deduped"] != true {
		t.Fatalf("second delivery: %s", other.raw)
	}
	id := strings.TrimPrefix(dispatched(first)[0], "pr=")
	if n := f.actors.starts(id); n != 2 {
		t.Fatalf("%d RunStarts, want 2 (one created)", n)
	}
}

func TestWebhookFailedStartIsNotRecordedSoARedeliveryRetries(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	body := webhookexamples.Load("pull_request.opened.1")
	var ev struct {
		PullRequest struct{ Head struct{ SHA string } } `json:"pull_request"`
	}
	json.Unmarshal(body, &ev)
	id := dsl.SemanticKey("pr", "Codertocat/Hello-World", ev.PullRequest.Head.SHA)
	f.actors.failStart[id] = true
	r := f.deliver("pull_request", "d-1", body)
	if r.status != 202 || !strings.Contains(strings.Join(skipped(r), ","), "pr:start_failed") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if _, seen := f.kv.m["gh-delivery:d-1"]; seen {
		t.Fatal("a delivery with a failed start was recorded as seen")
	}
	// The row it created is ended, not left queued with no run actor to move it.
	if ex := f.meta.execs[id]; ex.Status != "failure" || ex.CompletedAt.IsZero() || !strings.Contains(string(ex.Summary), `"tag":"StartFailed"`) {
		t.Fatalf("row after a failed start: %+v (summary %s)", ex, ex.Summary)
	}
	delete(f.actors.failStart, id)
	r = f.deliver("pull_request", "d-1", body)
	if got := dispatched(r); len(got) != 1 || got[0] != "pr="+id {
		t.Fatalf("redelivery: %s", r.raw)
	}
	// The retry runs it after all: the row is queued again, not failed and completed
	// with the StartFailed summary while its run goes on (reopenUnstarted).
	if ex := f.meta.execs[id]; ex.Status != "queued" || !ex.CompletedAt.IsZero() || ex.Summary != nil {
		t.Fatalf("row after the retry started it: status %s, completed %v, summary %s", ex.Status, ex.CompletedAt, ex.Summary)
	}
	// A row that ended for real is not reopened by another delivery.
	f.meta.UpdateExecution(t.Context(), edge.Execution{ID: id, Status: "failure", CompletedAt: time.Now(),
		Summary: []byte(`{"failure":{"tag":"CommandFailed","message":"exit 1"}}`)})
	f.deliver("pull_request", "d-2", body)
	if ex := f.meta.execs[id]; ex.Status != "failure" || ex.CompletedAt.IsZero() {
		t.Fatalf("an ended row was reopened: status %s, completed %v", ex.Status, ex.CompletedAt)
	}
}

func TestWebhookConcurrentDeliveriesStartOneExecution(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	body := webhookexamples.Load("pull_request.opened.1")
	var wg sync.WaitGroup
	created := make(chan bool, 1000)
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.deliver("pull_request", fmt.Sprintf("d-%d", i%10), body)
			if list, ok := r.body["dispatched"].([]any); ok {
				for _, d := range list {
					created <- d.(map[string]any)["deduped"] != true
				}
			}
		}()
	}
	wg.Wait()
	close(created)
	n := 0
	for c := range created {
		if c {
			n++
		}
	}
	if n != 1 || len(f.actors.started) != 1 {
		t.Fatalf("%d deliveries created an execution; %d executions", n, len(f.actors.started))
	}
}

func TestWebhookLearnsInstallationsForDispatch(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	f.deliver("installation", "d-1", webhookexamples.Load("installation.created.1"))
	if got := f.kv.get("installation:codertocat/hello-world"); got != "957387" {
		t.Fatalf("installation.created: %q", got)
	}
	f.deliver("installation_repositories", "d-2", webhookexamples.Load("installation_repositories.added.1"))
	if got := f.kv.get("installation:codertocat/space"); got != "957387" {
		t.Fatalf("installation_repositories.added: %q", got)
	}
	f.deliver("installation_repositories", "d-3", webhookexamples.Load("installation_repositories.removed.1"))
	if got := f.kv.get("installation:octocat/hello-world"); got != "0" {
		t.Fatalf("installation_repositories.removed: %q", got)
	}
	// Any event with an installation teaches its repository.
	f.deliver("check_run", "d-4", webhookexamples.Load("check_run.rerequested.1"))
	if got := f.kv.get("installation:github/hello-world"); got != "1" {
		t.Fatalf("check_run: %q", got)
	}

	// A signed dispatch without installation_id resolves by repository (any case).
	body := []byte(`{"run":"pr","github":{"repo":"CODERTOCAT/Hello-World","sha":"abcdef1234567"},"inputs":{"repo":"x/y","sha":"abc"}}`)
	req := httptest.NewRequest(http.MethodPost, "/v1/dispatch/pr", bytes.NewReader(body))
	req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader("hmac", body))
	r := f.do(req)
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	if p := f.meta.params(r.body["executionId"].(string)); p.InstallationID != 957387 {
		t.Fatalf("installation %d, want the learned 957387", p.InstallationID)
	}
	// Uninstalling forgets.
	f.deliver("installation", "d-5", webhookexamples.With(webhookexamples.Load("installation.deleted.1"),
		"installation.id", 957387, "repositories", []any{map[string]any{"full_name": "Codertocat/Hello-World"}}))
	if got := f.kv.get("installation:codertocat/hello-world"); got != "0" {
		t.Fatalf("installation.deleted: %q", got)
	}
}

func TestCheckRunRerequestedRerunsTheExecutionBehindIt(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	// An execution that reported check-run 4 (the id in GitHub's example payload).
	body := webhookexamples.Load("pull_request.opened.1")
	first := f.deliver("pull_request", "d-1", body)
	orig := strings.TrimPrefix(dispatched(first)[0], "pr=")
	f.kv.Put(t.Context(), "check-run-id:4", orig, 0)

	rr := webhookexamples.With(webhookexamples.Load("check_run.rerequested.1"), "check_run.name", "flare-dispatch/pr")
	r := f.deliver("check_run", "d-2", rr)
	want := orig + ":rerun-4"
	list, _ := r.body["dispatched"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["executionId"] != want || list[0].(map[string]any)["rerun"] != true {
		t.Fatalf("rerun: %s", r.raw)
	}
	po, pr := f.meta.params(orig), f.meta.params(want)
	if pr.Run != "pr" || pr.Repo != po.Repo || pr.SHA != po.SHA || string(pr.Inputs) != string(po.Inputs) || pr.InstallationID != 1 {
		t.Fatalf("rerun params %+v vs %+v", pr, po)
	}
	// A re-run of the re-run stays one level deep.
	f.kv.Put(t.Context(), "check-run-id:9", want, 0)
	r = f.deliver("check_run", "d-3", webhookexamples.With(rr, "check_run.id", 9))
	if got := dispatched(r); len(got) != 1 || got[0] != "pr="+orig+":rerun-9" {
		t.Fatalf("rerun of a rerun: %s", r.raw)
	}
	// Another App's check-run: nothing. Ours but unknown: skipped, said why.
	if r := f.deliver("check_run", "d-4", webhookexamples.Load("check_run.rerequested.1")); len(dispatched(r)) != 0 || len(skipped(r)) != 0 {
		t.Fatalf("foreign check-run: %s", r.raw)
	}
	r = f.deliver("check_run", "d-5", webhookexamples.With(rr, "check_run.id", 77))
	if got := skipped(r); len(got) != 1 || got[0] != "pr:unknown_check_run" {
		t.Fatalf("unknown check-run: %s", r.raw)
	}
}

// TestCheckSuiteRerequestedRerunsTheSuitesRuns: "Re-run all checks" on GitHub
// (check_suite rerequested) runs again the newest execution of each of our runs on the
// suite's commit, each as check_run rerequested would. Not run again: an older
// execution of the same run, one on another commit, a fan-out's child, one without a
// check-run. Before, the event was ignored and the button did nothing.
func TestCheckSuiteRerequestedRerunsTheSuitesRuns(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	ctx := t.Context()
	// Our check-runs on ec26c3e (the commit of GitHub's example suite): pr's and smoke's.
	prExec := strings.TrimPrefix(dispatched(f.deliver("pull_request", "d-1", webhookexamples.Load("pull_request.opened.1")))[0], "pr=")
	const sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
	smoke := webhookexamples.With(webhookexamples.Load("deployment_status.created.4"), "deployment.sha", sha,
		"deployment_status.environment_url", "https://preview.test")
	smokeExec := strings.TrimPrefix(dispatched(f.deliver("deployment_status", "d-2", smoke))[0], "smoke=")
	report := func(exec string, check int64) {
		if err := f.meta.UpdateExecution(ctx, edge.Execution{ID: exec, CheckRunID: check}); err != nil {
			t.Fatal(err)
		}
		f.kv.Put(ctx, fmt.Sprintf("check-run-id:%d", check), exec, 0)
	}
	report(prExec, 11)
	report(smokeExec, 12)
	// An older execution of pr on the commit (GitHub shows the newest), a child, one on
	// another commit, one without a check-run.
	input := f.meta.execs[prExec].Input
	for _, e := range []edge.Execution{
		{ID: "pr-older", Run: "pr", Repo: "Codertocat/Hello-World", SHA: sha, StartedAt: time.Unix(1, 0), Input: input, CheckRunID: 13},
		{ID: "pr-child", Run: "pr", Repo: "Codertocat/Hello-World", SHA: sha, StartedAt: time.Now().Add(time.Hour), Input: input, CheckRunID: 14, Parent: prExec},
		{ID: "pr-other", Run: "pr", Repo: "Codertocat/Hello-World", SHA: strings.Repeat("a", 40), StartedAt: time.Now().Add(time.Hour), Input: input, CheckRunID: 15},
		{ID: "pr-unreported", Run: "smoke", Repo: "Codertocat/Hello-World", SHA: sha, StartedAt: time.Now().Add(time.Hour), Input: input},
	} {
		f.meta.CreateExecution(ctx, e)
		if e.CheckRunID > 0 {
			report(e.ID, e.CheckRunID)
		}
	}

	r := f.deliver("check_suite", "d-3", webhookexamples.Load("check_suite.rerequested.1"))
	got := dispatched(r)
	sort.Strings(got)
	want := []string{"pr=" + prExec + ":rerun-11", "smoke=" + smokeExec + ":rerun-12"}
	if strings.Join(got, ",") != strings.Join(want, ",") || len(skipped(r)) != 0 {
		t.Fatalf("re-run all: dispatched %v, want %v; %s", got, want, r.raw)
	}
	if p := f.meta.params(prExec + ":rerun-11"); p.InstallationID != 957387 || p.SHA != sha {
		t.Fatalf("re-run params %+v", p)
	}
	// The same delivery again (GitHub retries) is the delivery seen; a second click
	// before the re-runs have reported finds the same executions.
	if r := f.deliver("check_suite", "d-3", webhookexamples.Load("check_suite.rerequested.1")); r.body["deduped"] != true || len(dispatched(r)) != 0 {
		t.Fatalf("redelivery: %s", r.raw)
	}
	r = f.deliver("check_suite", "d-5", webhookexamples.Load("check_suite.rerequested.1"))
	if len(dispatched(r)) != 2 {
		t.Fatalf("a second click: %s", r.raw)
	}
	for _, d := range r.body["dispatched"].([]any) {
		if d.(map[string]any)["deduped"] != true {
			t.Fatalf("a second click started new executions: %s", r.raw)
		}
	}
	// Another App's suite on a commit we never reported on: nothing.
	other := webhookexamples.With(webhookexamples.Load("check_suite.rerequested.1"), "check_suite.head_sha", strings.Repeat("b", 40))
	if r := f.deliver("check_suite", "d-4", other); len(dispatched(r)) != 0 || len(skipped(r)) != 0 {
		t.Fatalf("a suite without our check-runs: %s", r.raw)
	}
}

func TestWebhookRouteAnswers405ForGET(t *testing.T) {
	f := newFixture(t, edge.Config{WebhookSecret: whSecret})
	if r := f.do(httptest.NewRequest(http.MethodGet, "/v1/webhooks/github", nil)); r.status != 405 {
		t.Fatalf("%d", r.status)
	}
}

func TestEventStepNamesAgree(t *testing.T) {
	if dsl.EventStep("approve") != actors.EventStep("approve") {
		t.Fatal("dsl and actors name event steps differently")
	}
}

func FuzzWebhookNeverPanicsOnSignedBodies(f *testing.F) {
	// Small seeds: the fuzzer mutates them quickly (the real payloads are 30 KB).
	f.Add("pull_request", []byte(`{"action":"opened","pull_request":{"number":1,"head":{"sha":"abc","ref":"x"}},"repository":{"full_name":"a/b"},"installation":{"id":3}}`))
	f.Add("check_run", []byte(`{"action":"rerequested","check_run":{"id":4,"name":"flare-dispatch/pr"},"repository":{"full_name":"a/b"}}`))
	f.Add("installation", []byte(`{"installation":{"id":1},"repositories":[{"full_name":"../.."}]}`))
	fx := newFixture(&testing.T{}, edge.Config{WebhookSecret: whSecret})
	n := 0
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		n++
		r := fx.deliver(event, fmt.Sprintf("fz-%d", n), body)
		if r.status >= 500 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}
