package edge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// GET /v1/browser/cdp: the CDP websocket of a browser, passed through byte for byte,
// for a sandbox that holds no credential of the browser's (Cloudflare Browser
// Rendering, or a local chromium). The caller is an attempt of a live execution: its
// agent token (Authorization: Bearer, or ?token=) is checked and so is, with the run
// actor, that the attempt is current. 426 without a websocket upgrade, 401 for a bad
// token, 409 for an attempt that is over, 503 when no browser is configured, 502 when
// the browser refuses. The socket is closed when the execution ends.

// BrowserCDP is where /v1/browser/cdp connects: it answers the upgrade with the
// browser's and relays both ways until ctx ends or either side closes. An error
// wrapping ErrBrowserUpstream means nothing was answered yet (the edge answers 502).
// The target says whose socket it is, so that an adapter can choose the browser per
// run (on Cloudflare: the chromium of a `browser`-pool run's own sandbox, else
// Browser Rendering).
type BrowserCDP interface {
	Relay(ctx context.Context, w http.ResponseWriter, r *http.Request, t CDPTarget) error
}

// CDPTarget is the attempt a CDP socket belongs to.
type CDPTarget struct {
	Exec    string
	Attempt int
	Run     string
	Pool    string // the run's pool (dsl.PoolLean, dsl.PoolBrowser)
	Sandbox string // the sandbox the attempt runs in
}

// ErrBrowserUpstream is a browser that could not be reached or refused the socket.
var ErrBrowserUpstream = errors.New("the browser refused the connection")

// ErrBrowserUnconfigured is a BrowserCDP that has no browser for this run (503).
var ErrBrowserUnconfigured = errors.New("no browser is configured")

// ScopeCDP marks an agent token that is good for /v1/browser/cdp only: it is what a
// sandbox's commands get in CDP_WS_URL, so it must not open the agent API.
const ScopeCDP = "cdp"

// BrowserCDPURL is the pass-through's websocket URL for an attempt, with a token
// scoped to it.
func BrowserCDPURL(cfg Config, origin string, c AgentClaims) string {
	c.Scope = ScopeCDP
	ws := "ws" + strings.TrimPrefix(origin, "http")
	return ws + "/v1/browser/cdp?token=" + MintAgentToken(cfg, c)
}

// cdpWatchEvery is how often an open CDP pass-through asks whether its execution ended.
const cdpWatchEvery = 2 * time.Second

func (s *Server) browserCDP(w http.ResponseWriter, r *http.Request) {
	if !isWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		writeError(w, http.StatusUpgradeRequired, "upgrade_required", "GET /v1/browser/cdp is a websocket: send Upgrade: websocket")
		return
	}
	token := bearer(r)
	if token == "" {
		token = r.URL.Query().Get("token")
	}
	exec := tokenExec(token)
	claims, err := VerifyAgentToken(s.Config, token, exec, s.Now())
	if err == nil && claims.Scope != "" && claims.Scope != ScopeCDP {
		err = fmt.Errorf("%w: a %s token does not open /v1/browser/cdp", errBadToken, claims.Scope)
	}
	if err != nil {
		writeError(w, http.StatusUnauthorized, "unauthorized", "an agent token of a live execution is required: "+err.Error())
		return
	}
	if s.BrowserCDP == nil {
		writeError(w, http.StatusServiceUnavailable, "browser_not_configured", "no browser is configured for CDP (Browser Rendering binding, or BROWSER_CDP_URL locally)")
		return
	}
	if _, ok := s.callRun(w, r, exec, actors.AgentHeartbeat{Exec: exec, Attempt: claims.Attempt}); !ok {
		return
	}
	target, err := s.cdpTarget(r.Context(), exec, claims.Attempt)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	// The socket outlives the request's handler context only as long as the attempt:
	// it is closed when the run actor stops accepting the attempt.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	go s.watchAttempt(ctx, cancel, exec, claims.Attempt)
	began := s.Now()
	err = s.BrowserCDP.Relay(ctx, w, r, target)
	// Browser Rendering bills while the session is open (cost.go); a browser-pool run's
	// socket goes to its own sandbox's chromium, which the sandbox time prices
	if target.Pool != dsl.PoolBrowser {
		s.addBrowserTime(context.WithoutCancel(r.Context()), exec, s.Now().Sub(began))
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrBrowserUpstream):
			writeError(w, http.StatusBadGateway, "browser_unavailable", err.Error())
			return
		case errors.Is(err, ErrBrowserUnconfigured):
			writeError(w, http.StatusServiceUnavailable, "browser_not_configured", err.Error())
			return
		}
		s.Log.Warn("cdp pass-through ended", "execution", exec, "err", err)
	}
}

// cdpTarget reads the execution's run, pool and sandbox from its metadata row.
func (s *Server) cdpTarget(ctx context.Context, exec string, attempt int) (CDPTarget, error) {
	ex, err := s.Meta.Execution(ctx, exec)
	if err != nil {
		return CDPTarget{}, fmt.Errorf("execution %s: %w", exec, err)
	}
	var p Params
	if err := json.Unmarshal(ex.Input, &p); err != nil {
		return CDPTarget{}, fmt.Errorf("execution %s: params: %w", exec, err)
	}
	t := CDPTarget{Exec: exec, Attempt: attempt, Run: ex.Run, Pool: dsl.PoolLean, Sandbox: sandboxFor(p)}
	if run, ok := s.Runs[ex.Run]; ok {
		t.Pool = run.Spec().PoolName()
	}
	return t, nil
}

// watchAttempt cancels when the execution's attempt is no longer live.
func (s *Server) watchAttempt(ctx context.Context, cancel context.CancelFunc, exec string, attempt int) {
	t := time.NewTicker(cdpWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		reply, err := s.Actors.Call(ctx, actors.RunAddr(exec), actors.RunQuery{Exec: exec})
		if err != nil {
			continue
		}
		if st, ok := reply.(actors.RunStatus); ok && (st.Status.Terminal() || (st.Attempt != 0 && st.Attempt != attempt)) {
			cancel()
			return
		}
	}
}

func isWebSocketUpgrade(r *http.Request) bool {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

// tokenExec reads the execution an agent token names (not trusted until verified).
func tokenExec(token string) string {
	p, _, ok := strings.Cut(token, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return ""
	}
	var c AgentClaims
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Exec
}
