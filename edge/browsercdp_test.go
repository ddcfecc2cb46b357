package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// cdpChooser records the target it was asked for and has no browser for it.
type cdpChooser struct{ got edge.CDPTarget }

func (c *cdpChooser) Relay(_ context.Context, _ http.ResponseWriter, _ *http.Request, t edge.CDPTarget) error {
	c.got = t
	return fmt.Errorf("%w: not for this run", edge.ErrBrowserUnconfigured)
}

// The pass-through tells the adapter whose socket it is (run, pool, sandbox), so the
// browser can be chosen per run; an adapter without a browser for the run is 503.
func TestBrowserCDPAsksTheAdapterPerRun(t *testing.T) {
	srv, _, _ := previewEdge(t, "")
	ch := &cdpChooser{}
	srv.BrowserCDP = ch
	u := edge.BrowserCDPURL(edge.Config{HMACSecret: testSecret}, "http://edge.test", edge.AgentClaims{Exec: previewExec, Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()})
	req := httptest.NewRequest(http.MethodGet, "/v1/browser/cdp"+u[strings.Index(u, "?"):], nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "browser_not_configured") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	want := edge.CDPTarget{Exec: previewExec, Attempt: 1, Run: "previewer", Pool: "browser",
		Sandbox: edge.SandboxID(edge.SemanticID("previewer", "acme/app", "0123456789abcdef0123456789abcdef01234567"))}
	if ch.got != want {
		t.Fatalf("target %+v, want %+v", ch.got, want)
	}
}
