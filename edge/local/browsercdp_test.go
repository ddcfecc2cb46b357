package local_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/wsrelay/wsrelaytest"
)

// upgrade sends a websocket handshake to the stack's CDP route and returns the status.
func upgrade(t *testing.T, base, query string, header map[string]string) int {
	return wsrelaytest.HandshakeStatus(t, base, "/v1/browser/cdp"+query, header)
}

// GET /v1/browser/cdp passes a live attempt's CDP websocket through to the configured
// chromium, refuses what it must (426, 401, 503), and closes when the run ends.
func TestBrowserCDPPassThroughOnTheLocalStack(t *testing.T) {
	endpoint := chromiumtest.Endpoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st := startStack(t, env{"BROWSER_CDP_URL": endpoint})
	repo, shas := gittest.Repo(t, 1)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "sleep 60", nil), "")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	waitRunning(t, st, id)
	cfg := edge.Config{HMACSecret: st.Secrets.HMACSecret}
	claims := edge.AgentClaims{Exec: id, Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()}
	u := edge.BrowserCDPURL(cfg, st.URL, claims)

	if g := get(t, st.URL+"/v1/browser/cdp"); g.status != http.StatusUpgradeRequired {
		t.Fatalf("no upgrade: %d", g.status)
	}
	if code := upgrade(t, st.URL, "?token=nope", nil); code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", code)
	}
	other := edge.AgentClaims{Exec: id, Attempt: 1, Expires: time.Now().Add(-time.Minute).Unix()}
	if code := upgrade(t, st.URL, "", map[string]string{"Authorization": "Bearer " + edge.MintAgentToken(cfg, other)}); code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", code)
	}
	// The CDP-scoped token does not open the agent API (fails without the scope check in
	// agentRequest: checked by disabling it once).
	tok := u[strings.Index(u, "token=")+len("token="):]
	if p := post(t, st.URL+"/v1/agent/"+id+"/heartbeat", []byte(`{"attempt":1}`), map[string]string{"Authorization": "Bearer " + tok}); p.status != http.StatusUnauthorized {
		t.Fatalf("cdp token on the agent API: %d", p.status)
	}

	rb := rod.New().ControlURL(u).Context(ctx)
	if err := rb.Connect(); err != nil {
		t.Fatal(err)
	}
	p, err := rb.Page(proto.TargetCreateTarget{URL: "data:text/html,<title>via the edge</title>"})
	if err != nil {
		t.Fatal(err)
	}
	p.MustWaitLoad()
	if info := p.MustInfo(); info.Title != "via the edge" {
		t.Fatalf("title %q", info.Title)
	}
	// The run ends: the socket is closed (fails without watchAttempt: checked by
	// disabling it once).
	if c := post(t, st.URL+"/v1/executions/"+id+"/cancel", nil, map[string]string{"Authorization": "Bearer " + st.Secrets.AdminToken}); c.status/100 != 2 {
		t.Fatalf("cancel: %d %s", c.status, c.raw)
	}
	closed := make(chan struct{})
	go func() {
		for ctx.Err() == nil {
			if _, err := rb.Timeout(2 * time.Second).Version(); err != nil {
				close(closed)
				return
			}
		}
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the CDP socket outlived its run")
	}

	// Without a configured browser: 503.
	bare := startStack(t, nil)
	r = dispatch(t, bare, "offload-test", offloadBody(repo, shas[0], "sleep 30", nil), "")
	id2 := r.body["executionId"].(string)
	waitRunning(t, bare, id2)
	u2 := edge.BrowserCDPURL(edge.Config{HMACSecret: bare.Secrets.HMACSecret}, bare.URL, edge.AgentClaims{Exec: id2, Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()})
	if code := upgrade(t, bare.URL, u2[strings.Index(u2, "?"):], nil); code != http.StatusServiceUnavailable {
		t.Fatalf("unconfigured: %d", code)
	}
}

// waitRunning waits until the execution's agent runs.
func waitRunning(t *testing.T, st *local.Stack, id string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if executionView(t, st, id).Execution.Status == "running" {
			return
		}
		time.Sleep(100 * time.Millisecond) // polling the executions API
	}
	t.Fatalf("%s never ran", id)
}
