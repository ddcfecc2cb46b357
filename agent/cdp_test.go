package agent_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/cdp"

	"github.com/flare-dispatch/flare-dispatch/agent"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
	"github.com/flare-dispatch/flare-dispatch/internal/wsrelay/wsrelaytest"
)

// cdpHolder opens a browser session and holds it until its attempt ends.
var cdpHolder = dsl.Define(dsl.Spec{Name: "cdp-holder", Version: "1.0.0", MaxDuration: time.Minute, Pool: dsl.PoolBrowser},
	func(c *dsl.Ctx, _ struct{}) (struct{}, error) {
		s, err := c.Browser.NewCDPSession(c, dsl.SessionOptions{})
		if err != nil {
			return struct{}{}, err
		}
		defer s.Close(context.WithoutCancel(c))
		<-c.Done()
		return struct{}{}, nil
	})

// cdpStatus sends a websocket handshake to the agent's /cdp and returns the status.
func cdpStatus(t *testing.T, base, query, token string) int {
	header := map[string]string{}
	if token != "" {
		header["Authorization"] = "Bearer " + token
	}
	return wsrelaytest.HandshakeStatus(t, base, agent.PathCDP+query, header)
}

// GET /cdp hands the edge the CDP websocket of a running attempt's browser session
// (a `browser`-pool run's chromium beside the agent), with the server token only, and
// ends with the attempt.
func TestAgentCDPRouteReachesTheAttemptsBrowser(t *testing.T) {
	bin := chromiumtest.Bin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := newEdge(t)
	url := startAgent(t, func(c *agent.Config) { c.Registry = dsl.NewRegistry(cdpHolder); c.ChromiumBin = bin })
	st := start(e, "ex-cdp", 1, map[string]any{}, agentapi.Blobs{})
	st.Run = "cdp-holder"
	if code, body := post(t, url+agentapi.PathStart, st); code != http.StatusAccepted {
		t.Fatalf("start: %d %s", code, body)
	}
	q := "?exec=ex-cdp&attempt=1"
	if code := cdpStatus(t, url, q, ""); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
	if code := cdpStatus(t, url, "?exec=ex-cdp&attempt=2", serverToken); code != http.StatusNotFound {
		t.Fatalf("another attempt: %d", code)
	}
	// The session opens when the run gets to it: poll until the route finds it.
	for code := cdpStatus(t, url, q, serverToken); code != http.StatusSwitchingProtocols; code = cdpStatus(t, url, q, serverToken) {
		if code != http.StatusNotFound || ctx.Err() != nil {
			t.Fatalf("cdp: %d", code)
		}
		time.Sleep(50 * time.Millisecond) // polling for chromium's start
	}

	ws := &cdp.WebSocket{}
	if err := ws.Connect(ctx, "ws"+strings.TrimPrefix(url, "http")+agent.PathCDP+q, http.Header{"Authorization": {"Bearer " + serverToken}}); err != nil {
		t.Fatal(err)
	}
	rb := rod.New().Client(cdp.New().Start(ws)).Context(ctx)
	if err := rb.Connect(); err != nil {
		t.Fatal(err)
	}
	v, err := rb.Version()
	if err != nil || !strings.Contains(v.Product, "Chrom") {
		t.Fatalf("version through /cdp: %+v %v", v, err)
	}
	// The attempt ends: so does the socket.
	if code, _ := post(t, url+agentapi.PathCancel, agentapi.Cancel{Exec: "ex-cdp"}); code != http.StatusOK {
		t.Fatalf("cancel: %d", code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := rb.Timeout(2 * time.Second).Version(); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the CDP socket outlived its attempt")
		}
	}
}
