package cloudflare

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// The browser is chosen per run: a `browser`-pool run's own chromium through its
// agent; otherwise the local stand-in (dev only) or Browser Rendering; nothing is 503.
func TestBrowserCDPChoosesTheBrowserPerRun(t *testing.T) {
	token := func(sandbox string) string { return "server-token-of-" + sandbox }
	req := httptest.NewRequest(http.MethodGet, "/v1/browser/cdp?browser_session=s-1", nil)
	browserRun := edge.CDPTarget{Exec: "e:1", Attempt: 2, Run: "cdp-acceptance", Pool: dsl.PoolBrowser, Sandbox: "sb-1"}
	leanRun := edge.CDPTarget{Exec: "e:2", Attempt: 1, Run: "offload-test", Pool: dsl.PoolLean, Sandbox: "sb-2"}
	for _, c := range []struct {
		name string
		b    BrowserCDP
		t    edge.CDPTarget
		want UpstreamWS
	}{
		{"browser pool", BrowserCDP{Rendering: true, SandboxToken: token}, browserRun,
			UpstreamWS{Kind: "sandbox", Binding: "RUNS_SANDBOX_BROWSER", Name: "sb-1", Path: "/cdp?exec=e:1&attempt=2", Token: "server-token-of-sb-1"}},
		{"remote mode", BrowserCDP{Rendering: true, KeepAliveMS: 1000}, browserRun, UpstreamWS{Kind: "browser", KeepAliveMS: 1000, Session: "s-1"}},
		{"lean run", BrowserCDP{Rendering: true, SandboxToken: token}, leanRun, UpstreamWS{Kind: "browser", KeepAliveMS: 600000, Session: "s-1"}},
		{"dev stand-in", BrowserCDP{Rendering: true, DevURL: "ws://127.0.0.1:9/devtools/browser/x", SandboxToken: token}, leanRun,
			UpstreamWS{Kind: "url", URL: "ws://127.0.0.1:9/devtools/browser/x"}},
	} {
		got, err := c.b.Upstream(req, c.t)
		if err != nil || got != c.want {
			t.Errorf("%s: %+v %v, want %+v", c.name, got, err, c.want)
		}
	}
	if _, err := (BrowserCDP{SandboxToken: token}).Upstream(req, leanRun); !errors.Is(err, edge.ErrBrowserUnconfigured) {
		t.Errorf("no Browser Rendering for a lean run: %v", err)
	}
}

// Relay answers 101 with the upstream for the JavaScript entry and returns when its
// context ends.
func TestBrowserCDPRelayAnswersTheEntry(t *testing.T) {
	rec := httptest.NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := BrowserCDP{Rendering: true}.Relay(ctx, rec, httptest.NewRequest(http.MethodGet, "/v1/browser/cdp", nil), edge.CDPTarget{Pool: dsl.PoolLean})
	var up UpstreamWS
	if err != nil || rec.Code != http.StatusSwitchingProtocols || json.Unmarshal([]byte(rec.Header().Get(WebSocketHeader)), &up) != nil || up.Kind != "browser" {
		t.Fatalf("%v %d %q", err, rec.Code, rec.Header().Get(WebSocketHeader))
	}
}
