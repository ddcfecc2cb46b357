package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

var previewRun = dsl.Define(dsl.Spec{Name: "previewer", Version: "1.0.0", MaxDuration: time.Minute, Pool: dsl.PoolBrowser},
	func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })

// runState is a run actor for the preview and CDP routes: the attempt is live until
// the test ends the run.
type runState struct {
	mu     sync.Mutex
	status actors.Status
}

func (a *runState) Send(actors.Addr, actors.Message) error { return nil }

func (a *runState) Call(_ context.Context, _ actors.Addr, m actors.Message) (actors.Message, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch m := m.(type) {
	case actors.AgentHeartbeat:
		return actors.AgentAck{Exec: m.Exec, OK: !a.status.Terminal(), Stop: a.status.Terminal()}, nil
	case actors.RunQuery:
		return actors.RunStatus{Exec: m.Exec, Status: a.status, Attempt: 1}, nil
	}
	return nil, fmt.Errorf("unexpected %T", m)
}

func (a *runState) end() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status = actors.StatusSuccess
}

// portSandboxes serves every sandbox port from one local server, and records which.
type portSandboxes struct {
	app  *url.URL
	mu   sync.Mutex
	asks []string
}

func (p *portSandboxes) Start(context.Context, string, string, agentapi.Start) error { return nil }
func (p *portSandboxes) Stop(context.Context, string, agentapi.Cancel) error         { return nil }

func (p *portSandboxes) PortTransport(sandbox, pool string, port int) (http.RoundTripper, error) {
	p.mu.Lock()
	p.asks = append(p.asks, fmt.Sprintf("%s/%s/%d", sandbox, pool, port))
	p.mu.Unlock()
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.URL.Scheme, r.URL.Host = p.app.Scheme, p.app.Host
		return http.DefaultTransport.RoundTrip(r)
	}), nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

const previewExec = "previewer:acme_app:0123456789ab"

func previewEdge(t *testing.T, hostname string) (*edge.Server, *runState, *portSandboxes) {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app %s %s fwd=%s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-Host"))
	}))
	t.Cleanup(app.Close)
	u, _ := url.Parse(app.URL)
	meta, run, sb := newMeta(), &runState{status: actors.StatusRunning}, &portSandboxes{app: u}
	p, _ := json.Marshal(edge.Params{Exec: previewExec, Run: "previewer", Repo: "acme/app", SHA: "0123456789abcdef0123456789abcdef01234567"})
	meta.CreateExecution(context.Background(), edge.Execution{ID: previewExec, Run: "previewer", Repo: "acme/app", Input: p})
	srv := edge.New(edge.Deps{Config: edge.Config{HMACSecret: testSecret, PreviewHostname: hostname}, Runs: dsl.NewRegistry(previewRun),
		Meta: meta, KV: newKV(), Actors: run, Sandboxes: sb})
	return srv, run, sb
}

func askPreview(t *testing.T, srv *edge.Server, port int) *httptest.ResponseRecorder {
	t.Helper()
	tok := edge.MintAgentToken(edge.Config{HMACSecret: testSecret}, edge.AgentClaims{Exec: previewExec, Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()})
	req := httptest.NewRequest(http.MethodPost, "/v1/agent/"+url.PathEscape(previewExec)+"/preview", strings.NewReader(fmt.Sprintf(`{"attempt":1,"port":%d}`, port)))
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

func getHost(srv *edge.Server, host, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Host = host
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

// A preview URL serves its port of its sandbox while the attempt runs, and nothing
// else: another port, another sandbox, a made-up token, or the same URL once the run
// ended are 404.
func TestPreviewURLServesItsPortWhileTheRunLives(t *testing.T) {
	srv, run, sb := previewEdge(t, "preview.example.com")
	rec := askPreview(t, srv, 3000)
	if rec.Code != http.StatusOK {
		t.Fatalf("preview: %d %s", rec.Code, rec.Body)
	}
	var p agentapi.Preview
	json.Unmarshal(rec.Body.Bytes(), &p)
	u, err := url.Parse(p.URL)
	if err != nil || u.Scheme != "https" || !strings.HasSuffix(u.Host, ".preview.example.com") || !strings.HasPrefix(u.Host, "3000-") {
		t.Fatalf("url %q", p.URL)
	}
	label, _, _ := strings.Cut(u.Host, ".")
	if len(label) > 63 {
		t.Fatalf("label %q is longer than DNS allows", label)
	}
	sandbox := edge.SandboxID(edge.SemanticID("previewer", "acme/app", "0123456789abcdef0123456789abcdef01234567"))
	if !strings.HasPrefix(label, "3000-"+sandbox[:10]) {
		t.Fatalf("label %q does not name sandbox %s", label, sandbox)
	}

	if got := getHost(srv, u.Host, "/page?q=1"); got.Code != 200 || got.Body.String() != "app GET /page?q=1 fwd="+u.Host {
		t.Fatalf("through the preview: %d %q", got.Code, got.Body)
	}
	if want := sandbox + "/browser/3000"; len(sb.asks) != 1 || sb.asks[0] != want {
		t.Fatalf("asked %v, want [%s]", sb.asks, want)
	}
	token := label[strings.LastIndexByte(label, '-')+1:]
	for name, host := range map[string]string{
		"other port":    "3001" + strings.TrimPrefix(u.Host, "3000"),
		"other sandbox": "3000-someone-else-" + token + ".preview.example.com",
		"made-up token": strings.Replace(u.Host, token, "aaaaaaaaaaaaaaaaaaaa", 1),
		"other zone":    label + ".elsewhere.example.com",
	} {
		if got := getHost(srv, host, "/page"); got.Code != http.StatusNotFound || len(sb.asks) != 1 {
			t.Errorf("%s: %d %s (ports asked: %v)", name, got.Code, got.Body, sb.asks)
		}
	}
	// The run ends: the URL is dead (fails without the run actor's check in
	// previewGrantOf: checked by disabling it once).
	run.end()
	if got := getHost(srv, u.Host, "/"); got.Code != http.StatusNotFound {
		t.Fatalf("after the run: %d %s", got.Code, got.Body)
	}
}

func TestPreviewRequestRefusals(t *testing.T) {
	srv, _, _ := previewEdge(t, "preview.example.com")
	if rec := askPreview(t, srv, 0); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"field":"port"`) {
		t.Fatalf("port 0: %d %s", rec.Code, rec.Body)
	}
	bare, _, _ := previewEdge(t, "")
	if rec := askPreview(t, bare, 3000); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "preview_not_configured") {
		t.Fatalf("no hostname: %d %s", rec.Code, rec.Body)
	}
}

func TestPreviewURLKeepsToOneDNSLabel(t *testing.T) {
	for _, sandbox := range []string{"a", strings.Repeat("x", 40) + "-" + strings.Repeat("y", 40)} {
		u := edge.PreviewURL("p.example.com", 65535, sandbox, "0123456789abcdef0123")
		label, _, _ := strings.Cut(strings.TrimPrefix(u, "https://"), ".")
		if len(label) > 63 || strings.Contains(label, "--") {
			t.Errorf("%s: label %q", sandbox, label)
		}
	}
}

// The preview host parser takes any Host header: it never panics, and what it accepts
// is a port, a sandbox and a token of the right length that previewURL would write.
func FuzzParsePreviewHost(f *testing.F) {
	f.Add("3000-previewer-acme-app-0123456789ab-0123456789abcdef0123.p.example.com")
	f.Add("3000--0123456789abcdef0123.p.example.com:443")
	f.Add("-.p.example.com")
	f.Add("99999-a-0123456789abcdef0123.p.example.com")
	f.Fuzz(func(t *testing.T, host string) {
		port, sandbox, token, ok := edge.ParsePreviewHost(host, "p.example.com")
		if !ok {
			return
		}
		if port < 1 || port > 65535 || len(token) != 20 || strings.Trim(token, "0123456789abcdef") != "" || strings.ContainsAny(sandbox, ".:") {
			t.Fatalf("%q → %d %q %q", host, port, sandbox, token)
		}
	})
}
