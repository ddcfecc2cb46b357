package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/model"
	"github.com/flare-dispatch/flare-dispatch/edge/oidc"
	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
	"github.com/flare-dispatch/flare-dispatch/internal/webhookexamples"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

var modelRun = dsl.Define(dsl.Spec{Name: "reviewer", Version: "1.0.0", MaxDuration: time.Minute,
	Needs: dsl.Needs{Model: true, Comments: true, CI: true, ReposKey: "reviewer.repos"}},
	func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })

// agenticHarness is the agent harness with a run that declares the agentic needs and
// the model gateway over the fake OpenAI-compatible server.
func agenticHarness(t *testing.T, declare bool) (*agentHarness, *fakeopenai.Server, *commentingGitHub) {
	t.Helper()
	f := fakeopenai.New("sk-edge-only")
	t.Cleanup(f.Close)
	def, backends := model.Backends(model.Env{OpenAIBaseURL: f.URL, OpenAIKey: "sk-edge-only", OpenAIModel: "gpt-fake"})
	gw := model.New(http.DefaultClient, def, backends, map[string]model.Price{"gpt-fake": {InputPerMTok: 1, OutputPerMTok: 2}})
	gw.Sleep = func(context.Context, time.Duration) error { return nil }
	h := &agentHarness{meta: newMeta(), kv: newKV(), actors: newDSLActors(), blobs: newBlobs(), gh: &recordingGitHub{}}
	gh := &commentingGitHub{recordingGitHub: h.gh, comments: map[string]edge.PRComment{}}
	run := modelRun
	if !declare {
		run = dsl.Define(dsl.Spec{Name: "reviewer", Version: "1.0.0", MaxDuration: time.Minute},
			func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })
	}
	h.srv = edge.New(edge.Deps{Config: edge.Config{HMACSecret: testSecret}, Runs: dsl.NewRegistry(run),
		Meta: h.meta, KV: h.kv, Actors: h.actors, Blobs: h.blobs, GitHub: gh, Models: gw})
	p, _ := json.Marshal(edge.Params{Exec: "reviewer:acme_app:abc", Run: "reviewer", Repo: "acme/app", Ref: "refs/heads/main", SHA: "abc",
		InstallationID: 9, Origin: "https://edge.test"})
	h.parent = edge.Execution{ID: "reviewer:acme_app:abc", Run: "reviewer", Repo: "acme/app", StartedAt: time.UnixMilli(1_700_000_000_000).UTC(), Input: p}
	h.meta.CreateExecution(context.Background(), h.parent)
	return h, f, gh
}

// commentingGitHub adds comments and workflow runs to the recording GitHub.
type commentingGitHub struct {
	*recordingGitHub
	mu       sync.Mutex
	comments map[string]edge.PRComment
	runs     []edge.WorkflowRunInfo
}

func (g *commentingGitHub) FindComment(_ context.Context, _ int64, repo string, pr int, marker string) (edge.PRComment, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.comments[fmt.Sprint(repo, "#", pr)]
	return c, ok && strings.Contains(c.Body, marker), nil
}

func (g *commentingGitHub) PutComment(_ context.Context, _ int64, repo string, pr int, _, body string) (edge.PRComment, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := fmt.Sprint(repo, "#", pr)
	_, had := g.comments[k]
	c := edge.PRComment{ID: 11, URL: "https://github.com/" + repo + "/pull/1#issuecomment-11", Body: body}
	g.comments[k] = c
	return c, !had, nil
}

func (g *commentingGitHub) FailedRuns(context.Context, int64, string, time.Time) ([]edge.WorkflowRunInfo, error) {
	return g.runs, nil
}

func TestModelCallsGoThroughTheEdgeWithItsKey(t *testing.T) {
	h, f, _ := agenticHarness(t, true)
	f.Push(fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report", Arguments: `{"findings":[]}`}}, PromptTokens: 1000, CompletionTokens: 500})
	code, out := h.call(t, "/model", map[string]any{"attempt": 1, "user": "review this", "tools": []map[string]any{{"name": "report", "schema": map[string]any{"type": "object"}}}})
	if code != 200 || out["inputTokens"] != float64(1000) || out["backend"] != "openai" || out["costMicroUsd"] != float64(2000) {
		t.Fatalf("%d %v", code, out)
	}
	if got := f.Requests()[0].Header.Get("Authorization"); got != "Bearer sk-edge-only" {
		t.Fatalf("the backend saw %q", got)
	}
	u, ok := h.srv.Usage(context.Background(), h.parent.ID)
	if !ok || u.Calls != 1 || u.InputTokens != 1000 || u.OutputTokens != 500 || u.CostMicroUSD != 2000 || u.Models != "openai/gpt-fake" {
		t.Fatalf("usage %+v", u)
	}
	// A failure crosses the wire typed: 424 with the failure the agent rebuilds.
	f.Push(fakeopenai.Reply{Status: 401})
	code, out = h.call(t, "/model", map[string]any{"attempt": 1, "user": "x"})
	fail, _ := out["failure"].(map[string]any)
	if code != 424 || out["error"] != "capability_failed" || fail["tag"] != dsl.TagModelCallFailed || !strings.Contains(fmt.Sprint(fail), "auth-failed") {
		t.Fatalf("%d %v", code, out)
	}
}

func TestAgenticCapabilitiesNeedTheirDeclarations(t *testing.T) {
	h, f, _ := agenticHarness(t, false)
	for _, path := range []string{"/model", "/github/comment", "/github/comment/put", "/github/failed-runs"} {
		if code, out := h.call(t, path, map[string]any{"attempt": 1, "user": "x", "repo": "acme/app", "pr": 1,
			"marker": "<!-- flare-dispatch: x -->", "body": "<!-- flare-dispatch: x -->"}); code != 403 || out["error"] != "not_declared" {
			t.Errorf("%s: %d %v", path, code, out)
		}
	}
	if len(f.Requests()) != 0 {
		t.Fatal("an undeclared run reached the model")
	}
}

func TestCommentRoutesFindAndUpdateOneComment(t *testing.T) {
	h, _, gh := agenticHarness(t, true)
	marker := "<!-- flare-dispatch: pr-review -->"
	if code, out := h.call(t, "/github/comment", map[string]any{"attempt": 1, "repo": "acme/app", "pr": 4, "marker": marker}); code != 200 || out["found"] != false {
		t.Fatalf("%d %v", code, out)
	}
	if code, out := h.call(t, "/github/comment/put", map[string]any{"attempt": 1, "repo": "acme/app", "pr": 4, "marker": marker, "body": "v1\n" + marker}); code != 200 || out["created"] != true {
		t.Fatalf("%d %v", code, out)
	}
	if code, out := h.call(t, "/github/comment/put", map[string]any{"attempt": 1, "repo": "acme/app", "pr": 4, "marker": marker, "body": "v2\n" + marker}); code != 200 || out["created"] == true {
		t.Fatalf("%d %v", code, out)
	}
	if code, out := h.call(t, "/github/comment", map[string]any{"attempt": 1, "repo": "acme/app", "pr": 4, "marker": marker}); code != 200 || out["body"] != "v2\n"+marker {
		t.Fatalf("%d %v", code, out)
	}
	for name, body := range map[string]map[string]any{
		"other repo":     {"repo": "acme/other", "pr": 4, "marker": marker},
		"bad marker":     {"repo": "acme/app", "pr": 4, "marker": "<b>"},
		"no pr":          {"repo": "acme/app", "pr": 0, "marker": marker},
		"body no marker": {"repo": "acme/app", "pr": 4, "marker": marker, "body": "x"},
	} {
		body["attempt"] = 1
		path := "/github/comment"
		if body["body"] != nil {
			path += "/put"
		}
		if code, out := h.call(t, path, body); code != 403 && code != 400 {
			t.Errorf("%s: %d %v", name, code, out)
		}
	}
	_ = gh
}

// A scheduled run may reach the repositories the operator listed under its ReposKey,
// and no others.
func TestReposKeyWidensTheRepositoriesAScheduledRunReaches(t *testing.T) {
	h, _, gh := agenticHarness(t, true)
	gh.runs = []edge.WorkflowRunInfo{{ID: 1, Name: "ci", Conclusion: "failure"}}
	since := time.Now().Add(-time.Hour)
	if code, out := h.call(t, "/github/failed-runs", map[string]any{"attempt": 1, "repo": "acme/api", "since": since}); code != 403 {
		t.Fatalf("unlisted: %d %v", code, out)
	}
	h.kv.Put(context.Background(), "reviewer.repos", "acme/web, acme/api", 0)
	code, out := h.call(t, "/github/failed-runs", map[string]any{"attempt": 1, "repo": "acme/api", "since": since})
	if list, _ := out["runs"].([]any); code != 200 || len(list) != 1 {
		t.Fatalf("listed: %d %v", code, out)
	}
}

// Contract §12 row 8: a second pr-review for the same pull request inside 30 minutes
// is skipped with the earlier execution and the seconds left, by dispatch and by
// webhook alike.
func TestCooldownSkipsASecondReviewOfOnePR(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fx := newFixture(t, edge.Config{WebhookSecret: whSecret}, func(d *edge.Deps) {
		d.Runs = dsl.NewRegistry(runs.PRReview)
		d.Now = func() time.Time { return now }
	})
	dispatch := func(sha string) reply {
		body, _ := json.Marshal(map[string]any{"run": "pr-review", "github": map[string]any{"repo": "acme/app", "sha": sha},
			"inputs": map[string]any{"repo": "acme/app", "sha": sha, "baseSha": "0000000", "pr": 12}})
		req := httptest.NewRequest(http.MethodPost, "/v1/dispatch/pr-review", bytes.NewReader(body))
		req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader("hmac", body))
		return fx.do(req)
	}
	first := dispatch("aaaaaaaaaaaa1")
	if first.status != 202 || first.body["skipped"] != nil {
		t.Fatalf("first: %d %v", first.status, first.body)
	}
	now = now.Add(10 * time.Minute)
	second := dispatch("bbbbbbbbbbbb2")
	if second.status != 202 || second.body["skipped"] != "cooldown" || second.body["executionId"] != first.body["executionId"] ||
		second.body["retryAfterSec"] != float64(1200) {
		t.Fatalf("second: %d %v", second.status, second.body)
	}
	if fx.actors.starts("pr-review:acme_app:bbbbbbbbbbbb") != 0 {
		t.Fatal("the cooled dispatch started an execution")
	}
	// Another pull request has its own window.
	body, _ := json.Marshal(map[string]any{"run": "pr-review", "github": map[string]any{"repo": "acme/app", "sha": "ccccccccccc3"},
		"inputs": map[string]any{"repo": "acme/app", "sha": "ccccccccccc3", "baseSha": "0000000", "pr": 13}})
	req := httptest.NewRequest(http.MethodPost, "/v1/dispatch/pr-review", bytes.NewReader(body))
	req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader("hmac", body))
	if r := fx.do(req); r.body["skipped"] != nil {
		t.Fatalf("other PR: %v", r.body)
	}

	// Webhook: the example PR (#2) opens, then a push inside the window is skipped.
	var payload map[string]any
	_ = json.Unmarshal(webhookexamples.Load("pull_request.opened.1"), &payload)
	b, _ := json.Marshal(payload)
	if r := fx.deliver("pull_request", "d-1", b); len(dispatched(r)) != 1 {
		t.Fatalf("opened: %v", r.body)
	}
	now = now.Add(time.Minute)
	payload["action"] = "synchronize"
	payload["pull_request"].(map[string]any)["head"].(map[string]any)["sha"] = "dddddddddddddddddddddddddddddddddddddddd"
	b, _ = json.Marshal(payload)
	r := fx.deliver("pull_request", "d-2", b)
	sk, _ := r.body["skipped"].([]any)
	if len(dispatched(r)) != 0 || len(sk) != 1 || sk[0].(map[string]any)["reason"] != "cooldown" || sk[0].(map[string]any)["retryAfterSec"] != float64(1740) {
		t.Fatalf("synchronize inside the window: %v", r.body)
	}
}

func TestOIDCRoutesOnTheEdge(t *testing.T) {
	fx := newFixture(t, edge.Config{})
	if r := fx.do(httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil)); r.status != 503 || r.body["error"] != "oidc_not_configured" {
		t.Fatalf("%d %v", r.status, r.body)
	}
	jwk, _ := oidc.GenerateJWK()
	iss, err := oidc.New("https://runs.test", jwk)
	if err != nil {
		t.Fatal(err)
	}
	fx = newFixture(t, edge.Config{}, func(d *edge.Deps) { d.OIDC = iss })
	r := fx.do(httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	if r.status != 200 || r.body["jwks_uri"] != "https://runs.test/.well-known/jwks.json" {
		t.Fatalf("%d %v", r.status, r.body)
	}
	r = fx.do(httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if r.status != 200 || strings.Contains(r.raw, `"d"`) {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := fx.do(httptest.NewRequest(http.MethodPost, "/.well-known/jwks.json", nil)); r.status != 405 {
		t.Fatalf("POST: %d", r.status)
	}
}
