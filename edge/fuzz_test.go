package edge_test

// Fuzz targets for what the edge takes from outside (issue 15): dispatch bodies and
// their run inputs, execution ids and log file names in URLs, and the agent API's
// bodies. Signatures, webhook payloads and writeback manifests have theirs beside
// their tests (auth_test.go, webhooks_test.go, writeback_test.go). scripts/test runs
// each for a few seconds; `go test -fuzz FuzzX ./edge/` runs one for as long as you like.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// FuzzDispatchBody: whatever a signed dispatch carries (run name, Idempotency-Key,
// body), the answer is never a 5xx, and a 400 names its error code and the field.
func FuzzDispatchBody(f *testing.F) {
	f.Add("smoke", "", []byte(`{"run":"smoke","github":{"repo":"acme/web","sha":"0123456789abcdef0123456789abcdef01234567"},"inputs":{}}`))
	f.Add("smoke", "k:1", []byte(`{"run":"smoke","github":{"repo":"acme/web","sha":"main","installation_id":-1},"inputs":null}`))
	f.Add("pr", "../x", []byte(`{"run":"pr","github":{"repo":"a/..","sha":"a..b"},"inputs":{"repo":1},"notify":{"emails":["x"]}}`))
	f.Add("smoke", "", []byte(`{"run":"smoke","github":{"repo":"acme/web","sha":"abc"},"inputs":{"x":[`))
	fx := newFixture(&testing.T{}, edge.Config{})
	f.Fuzz(func(t *testing.T, run, key string, body []byte) {
		target := "/v1/dispatch/" + url.PathEscape(run)
		req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader("hmac", body))
		if key != "" && !strings.ContainsAny(key, "\r\n\x00") {
			req.Header.Set("Idempotency-Key", key)
		}
		r := fx.do(req)
		if r.status >= 500 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if r.status == http.StatusBadRequest {
			if r.body["error"] == nil || r.body["field"] == nil {
				t.Fatalf("400 without an error code and field: %s", r.raw)
			}
		}
	})
}

// blobSpy is edge.Blobs over memBlobs, recording every key and prefix asked for.
type blobSpy struct {
	*memBlobs
	mu   sync.Mutex
	keys []string
}

func (b *blobSpy) note(k string) {
	b.mu.Lock()
	b.keys = append(b.keys, k)
	b.mu.Unlock()
}

func (b *blobSpy) Get(ctx context.Context, key string) (io.ReadCloser, edge.BlobMeta, error) {
	b.note(key)
	return b.memBlobs.Get(ctx, key)
}

func (b *blobSpy) Head(ctx context.Context, key string) (edge.BlobMeta, error) {
	b.note(key)
	return b.memBlobs.Head(ctx, key)
}

func (b *blobSpy) List(ctx context.Context, prefix string) ([]edge.BlobInfo, error) {
	b.note(prefix)
	return b.memBlobs.List(ctx, prefix)
}

func (b *blobSpy) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.keys
	b.keys = nil
	return k
}

// FuzzExecutionURLs: execution ids and log file names in URLs (with a valid log token
// for the id, so the fuzzer gets past the check) never make a 5xx, and every object
// the edge then reads lies under that execution's own prefixes: no path escapes into
// another execution's logs or artifacts.
func FuzzExecutionURLs(f *testing.F) {
	f.Add("e1", "exec.ndjson")
	f.Add("e1", "exec-build.ndjson")
	f.Add("..", "../../e2/exec.ndjson")
	f.Add("e1/../e2", "exec.ndjson")
	f.Add("e1", "%2e%2e%2Fe2%2Fexec.ndjson")
	f.Add("e1:x_y-z", "report/index.html")
	blobs := &blobSpy{memBlobs: newBlobs()}
	blobs.put("logs/e1/exec.ndjson.0", `{"line":"hi"}`+"\n")
	blobs.put("logs/e2/exec.ndjson.0", `{"line":"secret"}`+"\n")
	blobs.put("artifacts/e2/report/index.html", "x")
	fx := newFixture(&testing.T{}, edge.Config{}, func(d *edge.Deps) { d.Blobs = blobs })
	cfg := edge.Config{HMACSecret: "hmac"}
	f.Fuzz(func(t *testing.T, id, file string) {
		tok := url.QueryEscape(edge.LogToken(cfg, id))
		eid, efile := url.PathEscape(id), url.PathEscape(file)
		for _, target := range []string{
			"/v1/executions/" + eid + "?t=" + tok,
			"/v1/executions/" + eid + "/logs?t=" + tok,
			"/v1/executions/" + eid + "/logs/" + efile + "?t=" + tok,
			"/v1/artifacts/" + eid + "/" + efile + "?t=" + tok,
			"/logs/" + eid + "?t=" + tok,
		} {
			req, err := http.NewRequest(http.MethodGet, "http://edge.test"+target, nil)
			if err != nil {
				continue // not a URL a client could send
			}
			r := fx.do(req)
			if r.status >= 500 {
				t.Fatalf("GET %s: %d %s", target, r.status, r.raw)
			}
			for _, k := range blobs.take() {
				if !edge.ValidExecutionID(id) {
					t.Fatalf("GET %s read %q for an invalid execution id", target, k)
				}
				if !strings.HasPrefix(k, "logs/"+id+"/") && !strings.HasPrefix(k, "artifacts/"+id+"/") || slices.Contains(strings.Split(k, "/"), "..") {
					t.Fatalf("GET %s read %q, outside execution %q", target, k, id)
				}
			}
		}
	})
}

// agentActors answers the agent API's messages as a live run actor would.
type agentActors struct{ *fakeActors }

func (a agentActors) Call(ctx context.Context, to actors.Addr, m actors.Message) (actors.Message, error) {
	switch m := m.(type) {
	case actors.AgentHeartbeat:
		return actors.AgentAck{Exec: m.Exec, OK: true}, nil
	case actors.StepBegin:
		return actors.StepDecision{Exec: m.Exec, Step: m.Step}, nil
	case actors.StepEnd:
		return actors.AgentAck{Exec: m.Exec, OK: true}, nil
	case actors.AgentExit:
		return actors.AgentAck{Exec: m.Exec, OK: true}, nil
	case actors.AgentSuspend:
		return actors.AgentAck{Exec: m.Exec, OK: true}, nil
	case actors.RunQuery:
		return actors.RunStatus{Exec: m.Exec, Status: actors.StatusRunning}, nil
	}
	return a.fakeActors.Call(ctx, to, m)
}

// FuzzAgentAPIBodies: whatever body an agent with a valid token posts to any agent
// route, the edge answers without a panic or a 500 (a port this fixture lacks may
// answer 502/503, a bad body 400 naming the field).
func FuzzAgentAPIBodies(f *testing.F) {
	routes := []string{"heartbeat", "steps/build/begin", "steps/build/end", "exit", "suspend", "children",
		"children/status", "secrets", "git-credentials", "config", "prior", "github/repository", "github/pulls",
		"github/pull-request", "model", "github/comment", "github/comment/put", "github/failed-runs"}
	f.Add(uint8(0), []byte(`{"attempt":1}`))
	f.Add(uint8(2), []byte(`{"attempt":1,"result":{"exitCode":0},"failure":{"tag":"ExecFailed","message":"x","detail":{"exitCode":-1}}}`))
	f.Add(uint8(3), []byte(`{"attempt":1,"output":null,"failure":{"tag":"","detail":[]}}`))
	f.Add(uint8(4), []byte(`{"attempt":1,"until":"2026-13-01T00:00:00Z","children":["../x"],"event":""}`))
	f.Add(uint8(5), []byte(`{"attempt":1,"children":[{"run":"smoke","key":"a","inputs":{}}]}`))
	f.Add(uint8(7), []byte(`{"attempt":1,"keys":["A","../B",""]}`))
	f.Add(uint8(14), []byte(`{"attempt":1,"messages":[{"role":"user","content":"hi"}],"schema":{}}`))
	fx := newFixture(&testing.T{}, edge.Config{}, func(d *edge.Deps) { d.Actors = agentActors{newActors()} })
	fx.meta.CreateExecution(context.Background(), edge.Execution{ID: "e1", Run: "smoke", Repo: "acme/web", SHA: "abc", Status: "running",
		Input: []byte(`{"executionId":"e1","run":"smoke","repo":"acme/web","sha":"abc","inputs":{}}`)})
	tok := edge.MintAgentToken(edge.Config{HMACSecret: "hmac"}, edge.AgentClaims{Exec: "e1", Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()})
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		target := "/v1/agent/e1/" + routes[int(route)%len(routes)]
		req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		r := fx.do(req)
		if r.status == http.StatusInternalServerError {
			t.Fatalf("POST %s: %d %s", target, r.status, r.raw)
		}
		if r.status == http.StatusBadRequest && r.body["error"] == nil {
			t.Fatalf("POST %s: 400 without an error code: %s", target, r.raw)
		}
	})
}

// FuzzMessageEnvelope: the actors' messages cross into JavaScript and back as JSON;
// whatever arrives, Unmarshal answers a message or an error naming the type, never a
// panic, and what it accepts survives a second round trip unchanged.
func FuzzMessageEnvelope(f *testing.F) {
	for _, m := range []actors.Message{actors.AdmitRequest{Exec: "e", Ticket: 2}, actors.AdmitGranted{Exec: "e", Confirm: true},
		actors.AgentStartFailed{Exec: "e", Attempt: 1, Cause: "x"}, actors.StepEnd{Exec: "e", Step: "s", Result: json.RawMessage(`{"a":1}`)}} {
		b, _ := actors.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte(`{"type":"nope","body":{}}`))
	f.Add([]byte(`{"type":"run.start","body":{"maxDuration":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := actors.Unmarshal(b)
		if err != nil {
			if !strings.Contains(err.Error(), "message") {
				t.Fatalf("error does not say what failed: %v", err)
			}
			return
		}
		b1, err := actors.Marshal(m)
		if err != nil {
			t.Fatalf("accepted %s but cannot marshal it: %v", b, err)
		}
		m2, err := actors.Unmarshal(b1)
		if err != nil {
			t.Fatalf("round trip of %s: %v", b1, err)
		}
		if b2, _ := actors.Marshal(m2); !bytes.Equal(b1, b2) {
			t.Fatalf("round trip changed %s into %s", b1, b2)
		}
	})
}
