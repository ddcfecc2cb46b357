package cloudflare

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/containers"
)

// A Worker cannot hijack a connection: the JavaScript entry (worker/src/index.js)
// makes the websocket. Go answers a websocket it accepts with status 101 and
// WebSocketHeader naming the upstream (JSON, UpstreamWS); the entry connects to it,
// answers the client with the other end of a WebSocketPair and copies messages both
// ways. The 101's body stays open while the socket may live: Go ends it when the
// execution ends (the entry then closes both sockets), and the entry cancels it when
// either socket closes (Go's next heartbeat write fails and the handler returns).

// WebSocketHeader carries the upstream of a 101 to the JavaScript entry; the entry
// never passes it on.
const WebSocketHeader = "X-Flare-Websocket"

// UpstreamWS is where the JavaScript entry connects a client's websocket.
type UpstreamWS struct {
	// Kind is "browser" (Browser Rendering through the BROWSER binding), "sandbox" (a
	// websocket route of a sandbox's agent, through its Container) or "url" (a
	// websocket URL: local runs only).
	Kind string `json:"kind"`
	// browser: KeepAliveMS of an acquired session; Session re-attaches to one
	// (?browser_session=) instead of acquiring, and is then not closed at the end.
	KeepAliveMS int    `json:"keepAliveMs,omitempty"`
	Session     string `json:"session,omitempty"`
	// sandbox: the class binding, the sandbox id, the agent's path and server token.
	Binding string `json:"binding,omitempty"`
	Name    string `json:"name,omitempty"`
	Path    string `json:"path,omitempty"`
	Token   string `json:"token,omitempty"`
	// url: ws:// or http:// (the entry fetches it with Upgrade: websocket).
	URL string `json:"url,omitempty"`
}

// BrowserCDP is the Worker's edge.BrowserCDP. The browser is chosen per run: a run of
// the `browser` pool has chromium in its own sandbox (the chromium image), reached
// through its agent's CDP route; any other run gets Browser Rendering.
type BrowserCDP struct {
	// Rendering: the BROWSER binding is bound.
	Rendering bool
	// KeepAliveMS is KEEP_ALIVE_MS, how long an acquired session outlives its last
	// connection (default 600000).
	KeepAliveMS int
	// DevURL is BROWSER_CDP_DEV_URL, a local chromium's CDP websocket that stands in
	// for Browser Rendering under `wrangler dev` (the binding cannot be reached
	// offline). The Worker reads it only with AGENT_URL set: never when deployed.
	DevURL string
	// SandboxToken is the agent server token of a sandbox (edge.AgentServerToken);
	// nil: `browser`-pool runs get Browser Rendering too.
	SandboxToken func(sandbox string) string
	// Every is how often the open socket's response is written to, so that Go notices
	// a socket the entry closed (default 5 s).
	Every time.Duration
}

// AgentCDPPath is the agent's websocket route to the CDP endpoint of the attempt's
// browser session (agent/cdp.go).
const AgentCDPPath = "/cdp"

var _ edge.BrowserCDP = BrowserCDP{}

// Configured reports whether any run can get a browser.
func (b BrowserCDP) Configured() bool {
	return b.Rendering || b.DevURL != "" || b.SandboxToken != nil
}

// Upstream chooses the browser of a socket, or says why there is none (edge's 503).
func (b BrowserCDP) Upstream(r *http.Request, t edge.CDPTarget) (UpstreamWS, error) {
	switch {
	case t.Pool == dsl.PoolBrowser && b.SandboxToken != nil:
		binding, err := containers.Binding(t.Pool)
		if err != nil {
			return UpstreamWS{}, err
		}
		return UpstreamWS{Kind: "sandbox", Binding: binding, Name: t.Sandbox,
			Path: AgentCDPPath + "?exec=" + t.Exec + "&attempt=" + strconv.Itoa(t.Attempt), Token: b.SandboxToken(t.Sandbox)}, nil
	case b.DevURL != "":
		return UpstreamWS{Kind: "url", URL: b.DevURL}, nil
	case b.Rendering:
		keep := b.KeepAliveMS
		if keep <= 0 {
			keep = 600000
		}
		return UpstreamWS{Kind: "browser", KeepAliveMS: keep, Session: r.URL.Query().Get("browser_session")}, nil
	}
	return UpstreamWS{}, fmt.Errorf("%w: run %s (pool %s) has no browser: bind BROWSER (Browser Rendering)", edge.ErrBrowserUnconfigured, t.Run, t.Pool)
}

// Relay implements edge.BrowserCDP: the 101 with the upstream, then a heartbeat until
// ctx ends (the execution ended) or a write fails (the entry closed the socket).
func (b BrowserCDP) Relay(ctx context.Context, w http.ResponseWriter, r *http.Request, t edge.CDPTarget) error {
	up, err := b.Upstream(r, t)
	if err != nil {
		return err
	}
	spec, _ := json.Marshal(up)
	w.Header().Set(WebSocketHeader, string(spec))
	w.WriteHeader(http.StatusSwitchingProtocols)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return err
	}
	every := b.Every
	if every <= 0 {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if _, err := w.Write([]byte{'\n'}); err != nil {
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil // the socket closed on the JavaScript side
		}
	}
}
