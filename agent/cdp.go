package agent

import (
	"context"
	"net/http"
	"strconv"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/internal/wsrelay"
)

// PathCDP is the agent's websocket route to the CDP endpoint of an attempt's newest
// browser session: GET /cdp?exec=<exec>&attempt=<n> with the server token. In the
// chromium image the browser runs beside the agent, so the edge's /v1/browser/cdp
// reaches a `browser`-pool run's chromium through here (edge/cloudflare, "sandbox"
// upstream). The socket ends with the attempt.
const PathCDP = "/cdp"

func (s *server) handleCDP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, agentapi.ErrorBody{Error: "method_not_allowed", Message: r.Method + " " + r.URL.Path})
		return
	}
	if !s.tokenOK(r) {
		writeJSON(w, http.StatusUnauthorized, agentapi.ErrorBody{Error: "unauthorized", Message: "missing or wrong bearer token"})
		return
	}
	if !wsrelay.IsUpgrade(r) {
		writeJSON(w, http.StatusUpgradeRequired, agentapi.ErrorBody{Error: "upgrade_required", Message: "GET /cdp is a websocket"})
		return
	}
	exec := r.URL.Query().Get("exec")
	attempt, _ := strconv.Atoi(r.URL.Query().Get("attempt"))
	s.mu.Lock()
	a := s.attempts[exec]
	s.mu.Unlock()
	if a == nil || a.start.Attempt != attempt {
		writeJSON(w, http.StatusNotFound, agentapi.ErrorBody{Error: "attempt_not_running", Message: "no attempt " + strconv.Itoa(attempt) + " of " + exec + " runs here", Field: "exec"})
		return
	}
	br := a.browser.Load()
	endpoint := ""
	if br != nil {
		endpoint = br.Endpoint()
	}
	if endpoint == "" {
		writeJSON(w, http.StatusNotFound, agentapi.ErrorBody{Error: "no_browser_session", Message: "the attempt has no browser session open"})
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	go func() { // the socket ends with the attempt
		select {
		case <-a.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	up, err := wsrelay.Dial(ctx, endpoint, r, nil)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, agentapi.ErrorBody{Error: "browser_unavailable", Message: err.Error()})
		return
	}
	if err := wsrelay.Relay(ctx, w, up, nil); err != nil {
		s.log.Warn("cdp relay ended", "exec", exec, "err", err)
	}
}
