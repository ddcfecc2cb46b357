package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
)

// Preview URLs (sandbox.exposePort, contract §3): a port of a running sandbox served
// at https://<port>-<sandbox>-<token>.<SANDBOX_PREVIEW_HOSTNAME>. The agent asks for
// one (POST /v1/agent/:exec/preview); the edge stores the token's grant in KV with
// the execution, attempt, sandbox and port, and the Worker offers every request to
// the preview proxy before the router. A token opens only its own port of its own
// sandbox, and only while its attempt is the execution's current one (asked of the
// run actor per request, without counting as a heartbeat): once the run ends, the URL
// is 404. Locally ports are on loopback and ExposePort stays http://127.0.0.1:<port>.

// PreviewPorts is the optional part of Sandboxes that reaches a sandbox's ports.
type PreviewPorts interface {
	PortTransport(sandbox, pool string, port int) (http.RoundTripper, error)
}

// previewGrant is what a preview token opens (KV preview/<token>).
type previewGrant struct {
	Exec    string `json:"exec"`
	Attempt int    `json:"attempt"`
	Sandbox string `json:"sandbox"`
	Pool    string `json:"pool"`
	Port    int    `json:"port"`
}

// previewTokenLen is the token's length: 80 random bits in lowercase hex, as a
// hostname is case-insensitive.
const previewTokenLen = 20

// maxLabel is DNS's limit on one label of a hostname.
const maxLabel = 63

// previewPorts is the Sandboxes' PreviewPorts, when there are preview URLs.
func (s *Server) previewPorts() PreviewPorts {
	p, _ := s.Sandboxes.(PreviewPorts)
	if s.Config.PreviewHostname == "" {
		return nil
	}
	return p
}

// agentPreview is POST /v1/agent/:exec/preview {attempt, port} → {url}.
func (s *Server) agentPreview(w http.ResponseWriter, r *http.Request) {
	var req agentapi.PreviewRequest
	id, c, ok := s.agentLive(w, r, &req)
	if !ok {
		return
	}
	if req.Port < 1 || req.Port > 65535 {
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("port %d is not a TCP port", req.Port), "field", "port")
		return
	}
	if s.previewPorts() == nil {
		writeError(w, http.StatusServiceUnavailable, "preview_not_configured", "preview URLs need SANDBOX_PREVIEW_HOSTNAME and a platform whose sandboxes serve ports")
		return
	}
	t, err := s.cdpTarget(r.Context(), id, c.Attempt)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	var raw [10]byte
	_, _ = rand.Read(raw[:])
	token := hex.EncodeToString(raw[:])
	g, _ := json.Marshal(previewGrant{Exec: id, Attempt: c.Attempt, Sandbox: t.Sandbox, Pool: t.Pool, Port: req.Port})
	ttl := 2 * time.Hour
	if run, ok := s.Runs[t.Run]; ok && run.Spec().MaxDuration > 0 {
		ttl = run.Spec().MaxDuration + 10*time.Minute
	}
	if err := s.KV.Put(r.Context(), "preview/"+token, string(g), ttl); err != nil {
		writeError(w, http.StatusServiceUnavailable, "kv_unavailable", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, agentapi.Preview{URL: previewURL(s.Config.PreviewHostname, req.Port, t.Sandbox, token)})
}

// previewURL is a grant's URL. The sandbox id is informational (the grant holds it):
// it is cut short so that the label stays within DNS's 63 characters.
func previewURL(hostname string, port int, sandbox, token string) string {
	p := strconv.Itoa(port)
	room := maxLabel - len(p) - len(token) - 2
	sandbox = strings.Trim(sandbox[:min(len(sandbox), max(room, 0))], "-")
	return "https://" + p + "-" + sandbox + "-" + token + "." + hostname
}

// parsePreviewHost splits <port>-<sandbox>-<token>.<hostname>; ok is false for any
// other host.
func parsePreviewHost(host, hostname string) (port int, sandbox, token string, ok bool) {
	if h, _, found := strings.Cut(host, ":"); found {
		host = h
	}
	label, found := strings.CutSuffix(strings.ToLower(host), "."+strings.ToLower(hostname))
	if !found || hostname == "" || strings.Contains(label, ".") {
		return 0, "", "", false
	}
	p, rest, _ := strings.Cut(label, "-")
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return 0, "", "", false
	}
	port, err := strconv.Atoi(p)
	token = rest[i+1:]
	if err != nil || port < 1 || port > 65535 || len(token) != previewTokenLen || strings.Trim(token, "0123456789abcdef") != "" {
		return 0, "", "", false
	}
	return port, rest[:i], token, true
}

// IsPreviewHost reports whether a request is for a preview URL (the Worker and the
// edge's handler offer it to the preview proxy before the router).
func (s *Server) IsPreviewHost(host string) bool {
	_, _, _, ok := parsePreviewHost(host, s.Config.PreviewHostname)
	return ok && s.Config.PreviewHostname != ""
}

// servePreview proxies a preview URL's request to the sandbox's port.
func (s *Server) servePreview(w http.ResponseWriter, r *http.Request) {
	pp := s.previewPorts()
	port, sandbox, token, ok := parsePreviewHost(r.Host, s.Config.PreviewHostname)
	if pp == nil || !ok {
		writeError(w, http.StatusNotFound, "preview_not_found", "no such preview URL")
		return
	}
	g, live := s.previewGrantOf(r.Context(), token)
	// The host must repeat the grant: its port exactly, the start of its sandbox id.
	if !live || g.Port != port || sandbox == "" || !strings.HasPrefix(g.Sandbox, sandbox) {
		writeError(w, http.StatusNotFound, "preview_not_found", "no such preview URL, or its run has ended")
		return
	}
	rt, err := pp.PortTransport(g.Sandbox, g.Pool, g.Port)
	if err != nil {
		writeError(w, http.StatusBadGateway, "preview_unavailable", err.Error())
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://sandbox"+r.URL.RequestURI(), r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	for k, v := range r.Header {
		if !hopByHop(k) {
			out.Header[k] = v
		}
	}
	out.ContentLength = r.ContentLength
	out.Header.Set("X-Forwarded-Host", r.Host)
	res, err := rt.RoundTrip(out)
	if err != nil {
		writeError(w, http.StatusBadGateway, "preview_unavailable", fmt.Sprintf("port %d of sandbox %s: %v", g.Port, g.Sandbox, err))
		return
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		if !hopByHop(k) {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(res.StatusCode)
	_, _ = io.Copy(w, res.Body)
}

// previewGrantOf reads a token's grant and whether its attempt is still current.
func (s *Server) previewGrantOf(ctx context.Context, token string) (previewGrant, bool) {
	var g previewGrant
	v, found, err := s.KV.Get(ctx, "preview/"+token)
	if err != nil || !found || json.Unmarshal([]byte(v), &g) != nil {
		return g, false
	}
	reply, err := s.Actors.Call(ctx, actors.RunAddr(g.Exec), actors.RunQuery{Exec: g.Exec})
	st, ok := reply.(actors.RunStatus)
	return g, err == nil && ok && !st.Status.Terminal() && st.Attempt == g.Attempt
}

// hopByHop names the headers a proxy does not pass on (RFC 9110 §7.6.1), and the
// sandbox routing headers a client must not set.
func hopByHop(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Host", "X-Flare-Sandbox", "Cf-Container-Target-Port":
		return true
	}
	return false
}
