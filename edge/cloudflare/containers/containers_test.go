package containers_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/containers"
)

type seen struct {
	binding, sandbox, header, path, auth string
	body                                 map[string]any
}

// fakeStubs answers as the sandbox's Durable Object stub would: every request goes
// to one agent server, remembering through which binding and object it came.
func fakeStubs(t *testing.T, status int) (func(binding, sandbox string) (http.RoundTripper, error), func() []seen) {
	var mu sync.Mutex
	var log []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		log = append(log, seen{binding: r.Header.Get("X-Test-Binding"), sandbox: r.Header.Get("X-Test-Object"),
			header: r.Header.Get(containers.SandboxHeader), path: r.URL.Path, auth: r.Header.Get("Authorization"), body: body})
		mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, `{"error":"nope"}`)
	}))
	t.Cleanup(srv.Close)
	target, _ := url.Parse(srv.URL)
	client := func(binding, sandbox string) (http.RoundTripper, error) {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			r.URL.Scheme, r.URL.Host = target.Scheme, target.Host
			r.Header.Set("X-Test-Binding", binding)
			r.Header.Set("X-Test-Object", sandbox)
			return http.DefaultTransport.RoundTrip(r)
		}), nil
	}
	return client, func() []seen { mu.Lock(); defer mu.Unlock(); return append([]seen(nil), log...) }
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestStartPostsToTheSandboxOfThePoolsClass(t *testing.T) {
	client, log := fakeStubs(t, http.StatusAccepted)
	s := &containers.Sandboxes{Transport: client}
	ctx := context.Background()
	st := agentapi.Start{Exec: "e1", Attempt: 1, Run: "offload-test", EdgeURL: "https://edge.example",
		Blobs: agentapi.Blobs{Endpoint: "/s3", Bucket: "runs"}}
	if err := s.Start(ctx, "sb-lean", dsl.PoolLean, st); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, "sb-browser", dsl.PoolBrowser, st); err != nil {
		t.Fatal(err)
	}
	got := log()
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
	for i, want := range []struct{ binding, sandbox string }{{containers.BindingLean, "sb-lean"}, {containers.BindingBrowser, "sb-browser"}} {
		g := got[i]
		if g.binding != want.binding || g.sandbox != want.sandbox || g.header != want.sandbox || g.path != agentapi.PathStart {
			t.Fatalf("request %d: %+v", i, g)
		}
		blobs := g.body["blobs"].(map[string]any)
		if blobs["endpoint"] != "https://edge.example/s3" || g.body["exec"] != "e1" {
			t.Fatalf("start body %v", g.body)
		}
	}
	if err := s.Start(ctx, "sb", "gpu", st); err == nil {
		t.Fatal("a pool without a class was accepted")
	}
	st.EdgeURL = ""
	if err := s.Start(ctx, "sb", dsl.PoolLean, st); err == nil {
		t.Fatal("a relative blob endpoint without an edge URL was accepted")
	}
	st.Blobs.Endpoint = "https://r2.example"
	if err := s.Start(ctx, "sb-abs", dsl.PoolLean, st); err != nil {
		t.Fatal(err)
	}
	if got := log(); got[len(got)-1].body["blobs"].(map[string]any)["endpoint"] != "https://r2.example" {
		t.Fatalf("absolute endpoint rewritten: %v", got[len(got)-1].body)
	}
}

func TestStopFindsThePoolOfTheExecution(t *testing.T) {
	client, log := fakeStubs(t, http.StatusOK)
	pools := map[string]string{"e-browser": dsl.PoolBrowser, "e-lean": dsl.PoolLean}
	s := &containers.Sandboxes{Transport: client, PoolOf: func(_ context.Context, exec string) (string, error) {
		if p, ok := pools[exec]; ok {
			return p, nil
		}
		return "", edge.ErrNotFound
	}}
	ctx := context.Background()
	if err := s.Stop(ctx, "sb1", agentapi.Cancel{Exec: "e-browser", Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx, "sb2", agentapi.Cancel{Exec: "e-lean", Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx, "sb3", agentapi.Cancel{Exec: "gone", Attempt: 1}); !errors.Is(err, edge.ErrNotFound) {
		t.Fatalf("stop of an unknown execution: %v", err)
	}
	got := log()
	if len(got) != 2 || got[0].binding != containers.BindingBrowser || got[1].binding != containers.BindingLean ||
		got[0].path != agentapi.PathCancel || got[0].body["attempt"] != float64(2) {
		t.Fatalf("requests %+v", got)
	}
}

func TestAgentRefusalIsAnError(t *testing.T) {
	client, _ := fakeStubs(t, http.StatusNotFound)
	s := &containers.Sandboxes{Transport: client}
	err := s.Start(context.Background(), "sb", dsl.PoolLean, agentapi.Start{Exec: "e", EdgeURL: "http://x"})
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v", err)
	}
}

// The agent's server token travels as the Authorization header, never in the body
// (a Container's agent pins it from the first /start).
func TestServerTokenIsSentAsTheAuthorizationHeader(t *testing.T) {
	transport, log := fakeStubs(t, http.StatusAccepted)
	sb := &containers.Sandboxes{Transport: transport}
	ctx := context.Background()
	if err := sb.Start(ctx, "sb-1", dsl.PoolLean, agentapi.Start{ServerToken: "tok", Exec: "e1", Attempt: 1, EdgeURL: "https://edge.test"}); err != nil {
		t.Fatal(err)
	}
	if err := sb.Stop(ctx, "sb-1", agentapi.Cancel{ServerToken: "tok", Exec: "e1", Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	for _, s := range log() {
		if s.auth != "Bearer tok" {
			t.Errorf("%s: Authorization %q", s.path, s.auth)
		}
		for k, v := range s.body {
			if v == "tok" {
				t.Errorf("%s: the token is in the body as %s", s.path, k)
			}
		}
	}
	if len(log()) != 2 {
		t.Fatalf("requests: %+v", log())
	}
}
