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

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// The agent API of fan-out, suspension and the brokered capabilities, against fakes of
// the run actors (which record what they are told) and of the metadata.

// dslActors plays the run actors: every agent message of attempt 1 is accepted (or
// refused with refuse), starts and queries answer from status, everything is recorded.
type dslActors struct {
	mu       sync.Mutex
	starts   []actors.RunStart
	suspends []actors.AgentSuspend
	sent     []actors.Message
	status   map[string]actors.RunStatus
	refuse   bool
}

func newDSLActors() *dslActors { return &dslActors{status: map[string]actors.RunStatus{}} }

func (a *dslActors) Send(_ actors.Addr, m actors.Message) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sent = append(a.sent, m)
	return nil
}

func (a *dslActors) Call(_ context.Context, _ actors.Addr, m actors.Message) (actors.Message, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch m := m.(type) {
	case actors.RunStart:
		a.starts = append(a.starts, m)
		st, ok := a.status[m.Exec]
		if !ok {
			st = actors.RunStatus{Exec: m.Exec, Status: actors.StatusQueued, Created: true}
			a.status[m.Exec] = actors.RunStatus{Exec: m.Exec, Status: actors.StatusQueued}
		}
		return st, nil
	case actors.RunQuery:
		return a.status[m.Exec], nil
	case actors.AgentHeartbeat:
		return actors.AgentAck{Exec: m.Exec, OK: !a.refuse, Superseded: a.refuse}, nil
	case actors.AgentSuspend:
		if a.refuse {
			return actors.AgentAck{Exec: m.Exec, Superseded: true, Reason: "attempt 1 is not current"}, nil
		}
		a.suspends = append(a.suspends, m)
		return actors.AgentAck{Exec: m.Exec, OK: true}, nil
	}
	return nil, fmt.Errorf("dslActors: unexpected %T", m)
}

const testSecret = "test-secret-0123456789"

var shardRun = dsl.Define(dsl.Spec{Name: "offload-test", Version: "1.0.0", MaxDuration: time.Minute},
	func(*dsl.Ctx, struct {
		Command string `json:"command"`
	}) (struct{}, error) {
		return struct{}{}, nil
	})

var parentRun = dsl.Define(dsl.Spec{Name: "matrix-fanout", Version: "1.0.0", MaxDuration: time.Minute,
	Needs: dsl.Needs{Config: []string{"matrix", "shared"}, PullRequests: true}},
	func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })

type agentHarness struct {
	srv    *edge.Server
	meta   *memMeta
	kv     *memKV
	actors *dslActors
	blobs  *memBlobs
	gh     *recordingGitHub
	parent edge.Execution
}

func newAgentHarness(t *testing.T) *agentHarness {
	h := &agentHarness{meta: newMeta(), kv: newKV(), actors: newDSLActors(), blobs: newBlobs(), gh: &recordingGitHub{}}
	h.srv = edge.New(edge.Deps{Config: edge.Config{HMACSecret: testSecret}, Runs: dsl.NewRegistry(shardRun, parentRun),
		Meta: h.meta, KV: h.kv, Actors: h.actors, Blobs: h.blobs, GitHub: h.gh})
	p, _ := json.Marshal(edge.Params{Exec: "mf:acme_app:abc", Run: "matrix-fanout", Repo: "acme/app", Ref: "refs/heads/main", SHA: "abc",
		InstallationID: 9, Origin: "https://edge.test"})
	h.parent = edge.Execution{ID: "mf:acme_app:abc", Run: "matrix-fanout", Repo: "acme/app", StartedAt: time.UnixMilli(1_700_000_000_000).UTC(), Input: p}
	h.meta.CreateExecution(context.Background(), h.parent)
	return h
}

// call posts body to the parent's agent API path with attempt 1's token.
func (h *agentHarness) call(t *testing.T, path string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req := httptest.NewRequest(http.MethodPost, "/v1/agent/"+h.parent.ID+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+edge.MintAgentToken(edge.Config{HMACSecret: testSecret},
		edge.AgentClaims{Exec: h.parent.ID, Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()}))
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func TestSpawnChildrenStartsThemAtTheParentsPlace(t *testing.T) {
	h := newAgentHarness(t)
	req := map[string]any{"attempt": 1, "failFast": true, "children": []map[string]any{
		{"key": "shard-1", "run": "offload-test", "inputs": map[string]any{"command": "a"}},
		{"key": "shard-2", "run": "offload-test", "inputs": map[string]any{"command": "b"}},
	}}
	code, out := h.call(t, "/children", req)
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	kids := out["children"].([]any)
	if len(kids) != 2 || kids[0].(map[string]any)["executionId"] != h.parent.ID+":shard-1" || kids[1].(map[string]any)["created"] != true {
		t.Fatalf("children %v", kids)
	}
	if len(h.actors.starts) != 2 {
		t.Fatalf("%d starts", len(h.actors.starts))
	}
	for i, s := range h.actors.starts {
		id := fmt.Sprintf("%s:shard-%d", h.parent.ID, i+1)
		if s.Exec != id || s.Parent != h.parent.ID || !s.OrderKey.Equal(h.parent.StartedAt) || s.Sandbox != edge.SandboxID(id) || s.Run != "offload-test" {
			t.Fatalf("start %d: %+v", i, s)
		}
		child := h.meta.execs[id]
		var p edge.Params
		json.Unmarshal(child.Input, &p)
		if child.Parent != h.parent.ID || p.Repo != "acme/app" || p.SHA != "abc" || string(p.Inputs) != fmt.Sprintf(`{"command":"%c"}`, 'a'+i) {
			t.Fatalf("child row %+v params %+v", child, p)
		}
	}
	if g := h.kv.get("children/" + h.parent.ID); !strings.Contains(g, `"failFast":true`) || !strings.Contains(g, "shard-2") {
		t.Fatalf("group %s", g)
	}
	// Again (a replayed attempt): the same ids, nothing created.
	code, out = h.call(t, "/children", req)
	if code != 200 || out["children"].([]any)[0].(map[string]any)["created"] != false {
		t.Fatalf("again: %d %v", code, out)
	}
}

func TestSpawnChildrenRejectsBadRequestsWithTheField(t *testing.T) {
	h := newAgentHarness(t)
	child := func(key, run string, inputs any) map[string]any {
		return map[string]any{"key": key, "run": run, "inputs": inputs}
	}
	for _, c := range []struct {
		children []map[string]any
		status   int
		field    string
	}{
		{nil, 400, "children"},
		{[]map[string]any{child("bad key", "offload-test", map[string]any{"command": "x"})}, 400, "children[0].key"},
		{[]map[string]any{child("a", "offload-test", map[string]any{"command": "x"}), child("a", "offload-test", map[string]any{"command": "x"})}, 400, "children[1].key"},
		{[]map[string]any{child("a", "nope", map[string]any{})}, 404, "children[0].run"},
		{[]map[string]any{child("a", "offload-test", map[string]any{"command": 3})}, 400, "children[0].inputs.command"},
		{[]map[string]any{child(strings.Repeat("k", 40), "offload-test", map[string]any{"command": "x"})}, 200, ""},
	} {
		code, out := h.call(t, "/children", map[string]any{"attempt": 1, "children": c.children})
		if code != c.status || (c.field != "" && out["field"] != c.field) {
			t.Errorf("%v: %d %v, want %d %s", c.children, code, out, c.status, c.field)
		}
	}
}

func TestSuspendForwardsToTheRunActor(t *testing.T) {
	h := newAgentHarness(t)
	h.call(t, "/children", map[string]any{"attempt": 1, "children": []map[string]any{{"key": "shard-1", "run": "offload-test", "inputs": map[string]any{"command": "a"}}}})
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	code, out := h.call(t, "/suspend", map[string]any{"attempt": 1, "until": until, "children": []string{h.parent.ID + ":shard-1"}, "event": "approve"})
	if code != 200 || len(h.actors.suspends) != 1 {
		t.Fatalf("%d %v", code, out)
	}
	s := h.actors.suspends[0]
	if s.Exec != h.parent.ID || s.Attempt != 1 || !s.Until.Equal(until) || s.Children[0] != h.parent.ID+":shard-1" || s.Event != "approve" {
		t.Fatalf("suspend %+v", s)
	}
	for _, c := range []struct {
		body   map[string]any
		status int
		field  string
	}{
		{map[string]any{"attempt": 1}, 400, "until"},
		{map[string]any{"attempt": 1, "children": []string{"someone-else:shard-1"}}, 400, "children[0]"},
		{map[string]any{"attempt": 1, "event": "no spaces"}, 400, "event"},
		{map[string]any{"attempt": 2, "until": until}, 403, "attempt"},
	} {
		if code, out := h.call(t, "/suspend", c.body); code != c.status || out["field"] != c.field {
			t.Errorf("%v: %d %v", c.body, code, out)
		}
	}
	h.actors.refuse = true
	if code, out := h.call(t, "/suspend", map[string]any{"attempt": 1, "until": until}); code != 409 || out["error"] != "superseded" {
		t.Fatalf("refused: %d %v", code, out)
	}
}

func TestChildrenStatusReportsOutputsFailuresAndLogs(t *testing.T) {
	h := newAgentHarness(t)
	h.call(t, "/children", map[string]any{"attempt": 1, "children": []map[string]any{
		{"key": "shard-1", "run": "offload-test", "inputs": map[string]any{"command": "a"}},
		{"key": "shard-2", "run": "offload-test", "inputs": map[string]any{"command": "b"}},
	}})
	one, two := h.parent.ID+":shard-1", h.parent.ID+":shard-2"
	h.actors.status[one] = actors.RunStatus{Exec: one, Status: actors.StatusSuccess}
	h.actors.status[two] = actors.RunStatus{Exec: two, Status: actors.StatusFailure, Failure: &actors.Failure{Tag: "CommandFailed", Message: "command exited with code 4", Detail: json.RawMessage(`{"exitCode":4}`)}}
	h.meta.UpdateExecution(context.Background(), edge.Execution{ID: one, Summary: json.RawMessage(`{"exitCode":0}`), CompletedAt: time.Now()})
	var st agentapi.ChildrenStatus
	code, out := h.call(t, "/children/status", map[string]any{"attempt": 1})
	b, _ := json.Marshal(out)
	json.Unmarshal(b, &st)
	if code != 200 || len(st.Children) != 2 {
		t.Fatalf("%d %s", code, b)
	}
	c1, c2 := st.Children[0], st.Children[1]
	if c1.Status != "success" || string(c1.Output) != `{"exitCode":0}` || !strings.HasPrefix(c1.LogsURL, "https://edge.test/logs/"+one+"?t=") {
		t.Fatalf("child 1 %+v", c1)
	}
	if c2.Status != "failure" || c2.Failure == nil || c2.Failure.Tag != "CommandFailed" {
		t.Fatalf("child 2 %+v", c2)
	}
}

func TestFailFastCancelsTheSiblingsOfAFailedChild(t *testing.T) {
	for _, failFast := range []bool{true, false} {
		h := newAgentHarness(t)
		h.call(t, "/children", map[string]any{"attempt": 1, "failFast": failFast, "children": []map[string]any{
			{"key": "shard-1", "run": "offload-test", "inputs": map[string]any{"command": "a"}},
			{"key": "shard-2", "run": "offload-test", "inputs": map[string]any{"command": "b"}},
			{"key": "shard-3", "run": "offload-test", "inputs": map[string]any{"command": "c"}},
		}})
		h.srv.Perform(context.Background(), actors.RunAddr(h.parent.ID+":shard-2"), actors.Progress{Exec: h.parent.ID + ":shard-2", Status: actors.StatusFailure,
			Failure: &actors.Failure{Tag: "CommandFailed", Message: "exit 1"}})
		var cancelled []string
		for _, m := range h.actors.sent {
			if c, ok := m.(actors.RunCancel); ok {
				cancelled = append(cancelled, c.Exec)
			}
		}
		want := ""
		if failFast {
			want = h.parent.ID + ":shard-1," + h.parent.ID + ":shard-3"
		}
		if got := strings.Join(cancelled, ","); got != want {
			t.Fatalf("failFast %v: cancelled %q, want %q", failFast, got, want)
		}
		// A child reports no check-run of its own.
		var r edge.CheckReport
		json.Unmarshal([]byte(h.kv.get("check-run/"+h.parent.ID+":shard-2")), &r)
		if r.Install != 0 {
			t.Fatalf("child check report for installation %d", r.Install)
		}
	}
}

func TestConfigReadsStayInTheRunsNamespaces(t *testing.T) {
	h := newAgentHarness(t)
	h.kv.Put(context.Background(), "matrix.shards", "8", 0)
	h.kv.Put(context.Background(), "shared.base", "main", 0)
	h.kv.Put(context.Background(), "ci/TOKEN", "secret", 0)
	code, out := h.call(t, "/config", map[string]any{"attempt": 1, "keys": []string{"matrix.shards", "shared.base", "matrix.absent"}})
	vals, _ := out["values"].(map[string]any)
	if code != 200 || vals["matrix.shards"] != "8" || vals["shared.base"] != "main" || len(vals) != 2 {
		t.Fatalf("%d %v", code, out)
	}
	for _, k := range []string{"ci/TOKEN", "matrixx.a", "matrix.", "matrix.secret/KEY", "other.a"} {
		if code, out := h.call(t, "/config", map[string]any{"attempt": 1, "keys": []string{k}}); code != 403 || out["error"] != "config_key_not_allowed" {
			t.Errorf("key %q: %d %v", k, code, out)
		}
	}
}

func TestBrokeredGitHubIsLimitedToTheExecutionsRepository(t *testing.T) {
	h := newAgentHarness(t)
	if code, out := h.call(t, "/github/repository", map[string]any{"attempt": 1, "repo": "acme/app"}); code != 200 || out["defaultBranch"] != "main" {
		t.Fatalf("repository: %d %v", code, out)
	}
	if code, out := h.call(t, "/github/pulls", map[string]any{"attempt": 1, "repo": "acme/other"}); code != 403 || out["field"] != "repo" {
		t.Fatalf("another repository: %d %v", code, out)
	}
	pr := map[string]any{"attempt": 1, "repo": "acme/app", "headBranch": "flare-dispatch/report", "title": "t", "commitMessage": "m",
		"files": []map[string]any{{"path": "docs/a.md", "content": "x"}}}
	if code, out := h.call(t, "/github/pull-request", pr); code != 200 || out["number"] != float64(7) || len(h.gh.specs) != 1 || !h.gh.specs[0].PR.Draft {
		t.Fatalf("draft PR: %d %v", code, out)
	}
	for field, bad := range map[string]map[string]any{
		"headBranch":     {"headBranch": "main"},
		"files[0].path":  {"files": []map[string]any{{"path": ".github/workflows/x.yml", "content": "x"}}},
		"title":          {"title": " "},
		"commitMessage":  {"commitMessage": ""},
		"files[0].path ": {"files": []map[string]any{{"path": "../x", "content": "x"}}},
	} {
		body := map[string]any{}
		for k, v := range pr {
			body[k] = v
		}
		for k, v := range bad {
			body[k] = v
		}
		if code, out := h.call(t, "/github/pull-request", body); code != 400 || out["field"] != strings.TrimSpace(field) {
			t.Errorf("bad %s: %d %v", field, code, out)
		}
	}
	h.gh.fail = &edge.GitHubError{Status: 429, Reason: "rate-limited", RetryAfter: 30 * time.Second, Message: "slow down"}
	code, out := h.call(t, "/github/pull-request", pr)
	if code != 424 || out["error"] != "github_error" || out["status"] != float64(429) || out["reason"] != "rate-limited" || out["retryAfterMs"] != float64(30000) {
		t.Fatalf("GitHub failure: %d %v", code, out)
	}
}

func TestArtifactRoute(t *testing.T) {
	h := newAgentHarness(t)
	pre := "artifacts/exec-1/"
	h.blobs.Put(context.Background(), pre+"demo.gif", strings.NewReader("GIF89a"), edge.BlobMeta{ContentType: "image/gif"})
	h.blobs.put(pre+"report", "tarball")
	h.blobs.put(pre+"report/index.html", "<h1>report</h1>")
	h.blobs.put(pre+"report/data/a.json", "{}")
	h.blobs.put(pre+"site", "tarball")
	h.blobs.put(pre+"site/<b>.txt", "x")
	h.blobs.put(pre+"site/sub/c.txt", "y")
	get := func(path string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.srv.ServeHTTP(w, req)
		return w
	}
	w := get("/v1/artifacts/exec-1/demo.gif")
	if w.Code != 200 || w.Body.String() != "GIF89a" || w.Header().Get("Content-Type") != "image/gif" ||
		!strings.Contains(w.Header().Get("Cache-Control"), "immutable") || w.Header().Get("ETag") == "" || !strings.HasPrefix(w.Header().Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("file: %d %q %v", w.Code, w.Body, w.Header())
	}
	if w2 := get("/v1/artifacts/exec-1/demo.gif", "If-None-Match", w.Header().Get("ETag")); w2.Code != 304 {
		t.Fatalf("conditional: %d", w2.Code)
	}
	for path, want := range map[string]string{
		"/v1/artifacts/exec-1/report/":            "<h1>report</h1>",
		"/v1/artifacts/exec-1/report/data/a.json": "{}",
		"/v1/artifacts/exec-1/report":             "tarball",
		"/v1/artifacts/exec-1/site/":              `<a href="./sub/">sub/</a>`,
	} {
		if w := get(path); w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	if w := get("/v1/artifacts/exec-1/site/"); !strings.Contains(w.Body.String(), "&lt;b&gt;.txt") || strings.Contains(w.Body.String(), "<b>.txt") ||
		!strings.Contains(w.Body.String(), "download .tar.gz") {
		t.Fatalf("listing does not escape names: %s", w.Body)
	}
	for path, code := range map[string]string{
		"/v1/artifacts/exec-1/demo.gif/": "artifact_not_browsable",
		"/v1/artifacts/exec-1/nope":      "artifact_not_found",
		"/v1/artifacts/exec-1/nope/":     "artifact_not_found",
		"/v1/artifacts/exec-1/report/x":  "artifact_not_found",
		"/v1/artifacts/a%20b/report":     "invalid_execution_id",
	} {
		w := get(path)
		var body map[string]any
		json.Unmarshal(w.Body.Bytes(), &body)
		if body["error"] != code {
			t.Errorf("%s: %d %s, want %s", path, w.Code, w.Body, code)
		}
	}
}
