// Package edge is the Dispatcher: one http.Handler over small ports (actors, SQL
// metadata, blobs, KV, sandboxes, checks, clock). The Cloudflare build and the local
// build differ only in the adapters they pass to New.
package edge

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge/oidc"
)

// Deps are the ports and the run registry.
type Deps struct {
	Config Config
	Runs   dsl.Registry
	Actors Actors
	Meta   Metadata
	Blobs  Blobs
	KV     KV
	// ConfigKV is CONFIG_KV: run configuration and run secrets, where operators of the
	// original put them (`wrangler kv key put --binding CONFIG_KV`); IdempotencyKV is
	// IDEMPOTENCY_KV: webhook delivery and dispatch dedup (24 h). nil means KV (the
	// edge's own state). specs/config.md lists the keys.
	ConfigKV      KV
	IdempotencyKV KV
	Sandboxes     Sandboxes
	Checks        Checks
	Tokens        RepoTokens
	// GitHub brokers GitHub for runs: reads, draft pull requests, writeback commits
	// (ports_github.go); nil without App credentials.
	GitHub GitHubAPI
	// HTTPClient makes the edge's own outbound calls (the manifest code exchange):
	// an *http.Client, or the Worker's fetch transport. nil means http.DefaultClient,
	// except in the js/wasm build (httpclient_native.go).
	HTTPClient HTTPDoer
	// BrowserCDP is the browser behind /v1/browser/cdp (browsercdp.go); nil: 503.
	BrowserCDP BrowserCDP
	Now        func() time.Time
	Log        *slog.Logger
	// Models is the model gateway (edge/model) the agentic runs call through
	// POST /v1/agent/:exec/model; nil: no model calls on this deploy.
	Models Models
	// OIDC makes the edge an OIDC issuer (/.well-known/…, Bedrock's STS); nil or
	// unconfigured: those routes answer 503.
	OIDC *oidc.Issuer
	// Mailer sends completion emails (notify.go): the send_email binding on
	// Cloudflare, SMTP or a logged sink locally; nil: no email.
	Mailer Mailer
}

// Server is the edge.
type Server struct {
	Deps
	mux           *http.ServeMux
	instanceTypes map[string]string // pool → Containers instance type (cost.go)
}

// maxBody caps request bodies: dispatches are small; a step result is at most 1 MiB.
const maxBody = 2 << 20

// New builds the edge.
func New(d Deps) *Server {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{Deps: d, mux: http.NewServeMux()}
	types, err := ParseInstanceTypes(d.Config.InstanceTypes)
	if err != nil {
		d.Log.Error("costs use the default instance type", "err", err)
	}
	s.instanceTypes = types
	s.route("/health", http.MethodGet, s.health)
	s.route("/v1/dispatch/{run}", http.MethodPost, s.dispatch)
	s.route("/v1/executions", http.MethodGet, s.listExecutions)
	s.route("/v1/executions/{id}", http.MethodGet, s.execution)
	s.route("/v1/executions/{id}/logs", http.MethodGet, s.logsAll)
	s.route("/v1/executions/{id}/logs/{file}", http.MethodGet, s.logFile)
	s.route("/v1/executions/{id}/cancel", http.MethodPost, s.cancel)
	s.route("/v1/agent/{id}/heartbeat", http.MethodPost, s.agentHeartbeat)
	s.route("/v1/agent/{id}/steps/{step}/begin", http.MethodPost, s.agentStepBegin)
	s.route("/v1/agent/{id}/steps/{step}/end", http.MethodPost, s.agentStepEnd)
	s.route("/v1/agent/{id}/exit", http.MethodPost, s.agentExit)
	s.route("/v1/agent/{id}/secrets", http.MethodPost, s.agentSecrets)
	s.route("/v1/agent/{id}/git-credentials", http.MethodPost, s.agentGitCredentials)
	// the DSL's capabilities: suspend and fan-out (children.go), brokered config,
	// GitHub and earlier executions (agentcaps.go), artifacts (artifacts.go)
	s.route("/v1/agent/{id}/suspend", http.MethodPost, s.agentSuspend)
	s.route("/v1/agent/{id}/children", http.MethodPost, s.agentSpawnChildren)
	s.route("/v1/agent/{id}/children/status", http.MethodPost, s.agentChildrenStatus)
	s.route("/v1/agent/{id}/config", http.MethodPost, s.agentConfig)
	s.route("/v1/agent/{id}/github/repository", http.MethodPost, s.agentGitHubRepository)
	s.route("/v1/agent/{id}/github/pulls", http.MethodPost, s.agentGitHubPulls)
	s.route("/v1/agent/{id}/github/pull-request", http.MethodPost, s.agentGitHubPullRequest)
	s.route("/v1/agent/{id}/prior", http.MethodPost, s.agentPrior)
	s.route("/v1/agent/{id}/preview", http.MethodPost, s.agentPreview) // preview.go
	// the agentic runs' capabilities (agentic.go)
	s.route("/v1/agent/{id}/model", http.MethodPost, s.agentModel)
	s.route("/v1/agent/{id}/github/comment", http.MethodPost, s.agentFindComment)
	s.route("/v1/agent/{id}/github/comment/put", http.MethodPost, s.agentPutComment)
	s.route("/v1/agent/{id}/github/failed-runs", http.MethodPost, s.agentFailedRuns)
	s.route("/.well-known/openid-configuration", http.MethodGet, s.oidcIssuer().ServeDiscovery)
	s.route("/.well-known/jwks.json", http.MethodGet, s.oidcIssuer().ServeJWKS)
	s.route("/v1/artifacts/{exec}/{name}", http.MethodGet, s.artifact)
	s.route("/v1/browser/cdp", http.MethodGet, s.browserCDP)
	s.route("/v1/artifacts/{exec}/{name}/{path...}", http.MethodGet, s.artifact)
	s.route("/v1/webhooks/github", http.MethodPost, s.webhook)
	s.route("/v1/github/install/new", http.MethodGet, s.installNew)
	s.route("/v1/github/installed", http.MethodGet, s.installed)
	s.route("/v1/admin/events/{id}", http.MethodPost, s.adminEvent)
	// operator pages: the log viewer (viewer.go) and the dashboard (dashboard.go)
	s.route("/logs/{id}", http.MethodGet, s.viewer)
	s.route("/{$}", http.MethodGet, s.dashboard)
	s.route("/session", http.MethodPost, s.dashboardLogin)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "not_found"})
	})
	return s
}

// route registers a path for one method; other methods get a JSON 405.
func (s *Server) route(pattern, method string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "method_not_allowed"})
			return
		}
		h(w, r)
	})
}

// ServeHTTP implements http.Handler, turning a panic into a JSON 500.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			s.Log.Error("panic in handler", "path", r.URL.Path, "panic", v)
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "internal", "message": "internal error"})
		}
	}()
	if s.Config.PreviewHostname != "" && s.IsPreviewHost(r.Host) {
		s.servePreview(w, r) // before the router (contract §3)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "runs": s.Runs.Names()})
}

// origin is PUBLIC_ORIGIN, else the request's own.
func (s *Server) origin(r *http.Request) string {
	if s.Config.PublicOrigin != "" {
		return s.Config.PublicOrigin
	}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// LogLink is an execution's log link as the API gives it (logsUrl): the original's
// /v1/executions/:id/logs?t= form, which the Action and existing workflows derive the
// execution's status URL from. A browser that opens it gets the viewer page.
func (s *Server) LogLink(origin, exec string) string {
	return origin + "/v1/executions/" + url.PathEscape(exec) + "/logs?t=" + LogToken(s.Config, exec)
}

// ViewerLink is the log viewer page (same token): the check-run's details link and
// the 202's detailsUrl.
func (s *Server) ViewerLink(origin, exec string) string {
	return origin + "/logs/" + url.PathEscape(exec) + "?t=" + LogToken(s.Config, exec)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, extra ...any) {
	body := map[string]any{"error": code, "message": msg}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	writeJSON(w, status, body)
}

// readBody reads at most maxBody bytes; ok is false (and a 413 written) past that.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds 2 MiB")
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "invalid_body", "could not read request body: "+err.Error())
		return nil, false
	}
	return b, true
}

func bearer(r *http.Request) string {
	v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(v)
}

func (s *Server) configKV() KV {
	if s.ConfigKV != nil {
		return s.ConfigKV
	}
	return s.KV
}

func (s *Server) idempotencyKV() KV {
	if s.IdempotencyKV != nil {
		return s.IdempotencyKV
	}
	return s.KV
}
