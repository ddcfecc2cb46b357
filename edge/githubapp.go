package edge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// The GitHub App manifest flow (contract §3): GET /v1/github/install/new lets the
// operator create the App from github-app-manifest.json; GitHub sends the browser back
// to GET /v1/github/installed with a one-time code, which is exchanged for the App's
// credentials and shown once.
//
// The original read `state` without checking it (a CSRF gap). Here the state is bound
// and verified: it is MAC'd with a key derived from HMAC_SECRET, expires after an hour,
// carries the hash of a nonce kept in an HttpOnly SameSite=Lax cookie on the browser
// that started the flow (another browser, or a forged link, has no such cookie), is
// accepted once, and names the owner it was made for (the App GitHub created must
// belong to it).

//go:embed github-app-manifest.json
var appManifest []byte

const (
	manifestPlaceholder = "https://runs.example.com"
	githubWeb           = "https://github.com"
	stateCookie         = "flare_manifest_state"
	stateTTL            = time.Hour
	infoManifestState   = "flare-dispatch/manifest-state/v1"
)

var codeChars = pattern.NewSet("A-Za-z0-9_-")

// AppManifest is the App manifest with the origin put in its URLs.
func AppManifest(origin string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(appManifest, &m); err != nil {
		return nil, err
	}
	m["url"] = origin
	m["redirect_url"] = origin + "/v1/github/installed"
	if h, ok := m["hook_attributes"].(map[string]any); ok {
		h["url"] = origin + "/v1/webhooks/github"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

// manifestState is what the state parameter carries.
type manifestState struct {
	Nonce   string `json:"n"` // hash of the cookie's nonce (the URL never shows the cookie)
	Owner   string `json:"o"` // "" = personal account
	Expires int64  `json:"x"` // unix seconds
}

func (s *Server) stateMAC(payload string) string {
	m := hmac.New(sha256.New, derive(s.Config.HMACSecret, "", infoManifestState))
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) signState(st manifestState) string {
	b, _ := json.Marshal(st)
	p := base64.RawURLEncoding.EncodeToString(b)
	return p + "." + s.stateMAC(p)
}

func nonceHash(nonce string) string {
	h := sha256.Sum256([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// errState explains a refused state; its text is shown to the operator.
var errState = errors.New("invalid state")

// verifyState checks the state's MAC and expiry and that the browser presents the
// cookie with the same nonce.
func (s *Server) verifyState(r *http.Request, raw string) (manifestState, error) {
	var st manifestState
	p, mac, ok := strings.Cut(raw, ".")
	if raw == "" || !ok {
		return st, fmt.Errorf("%w: the state parameter is missing or malformed", errState)
	}
	if !constantEqual(mac, s.stateMAC(p)) {
		return st, fmt.Errorf("%w: the state was not issued by this deploy", errState)
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil || json.Unmarshal(b, &st) != nil || st.Nonce == "" {
		return st, fmt.Errorf("%w: the state does not decode", errState)
	}
	if s.Now().Unix() > st.Expires {
		return st, fmt.Errorf("%w: the state expired; start again at /v1/github/install/new", errState)
	}
	c, err := r.Cookie(stateCookie)
	if err != nil || !constantEqual(nonceHash(c.Value), st.Nonce) {
		return st, fmt.Errorf("%w: this browser did not start the flow (the state cookie is missing or differs)", errState)
	}
	return st, nil
}

func (s *Server) installNew(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("owner") {
		writePage(w, http.StatusOK, "Create the flare-dispatch GitHub App", chooserBody)
		return
	}
	owner := strings.TrimSpace(q.Get("owner"))
	if owner != "" && !pattern.GitHubOwner(owner) {
		writeError(w, http.StatusBadRequest, "invalid_owner", "owner must be a GitHub organization login (^[A-Za-z0-9][A-Za-z0-9-]{0,38}$) or empty for a personal account", "field", "owner")
		return
	}
	if s.Config.HMACSecret == "" {
		writeError(w, http.StatusServiceUnavailable, "install_not_configured", "HMAC_SECRET is unset; it signs the manifest flow's state. Set it first.")
		return
	}
	origin := s.origin(r)
	manifest, err := AppManifest(origin)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "manifest_invalid", err.Error())
		return
	}
	raw := make([]byte, 18)
	_, _ = rand.Read(raw)
	nonce := base64.RawURLEncoding.EncodeToString(raw)
	st := manifestState{Nonce: nonceHash(nonce), Owner: owner, Expires: s.Now().Add(stateTTL).Unix()}
	state := s.signState(st)
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: nonce, Path: "/v1/github/", MaxAge: int(stateTTL / time.Second),
		HttpOnly: true, Secure: strings.HasPrefix(origin, "https://"), SameSite: http.SameSiteLaxMode})
	action := githubWeb + "/settings/apps/new"
	who := "your personal account"
	if owner != "" {
		action = githubWeb + "/organizations/" + owner + "/settings/apps/new"
		who = "the organization " + owner
	}
	action += "?state=" + url.QueryEscape(state)
	body := fmt.Sprintf(`<p>Creating the App on %s, with webhooks to <code>%s</code>.</p>
<form method="post" action="%s">
<input type="hidden" name="manifest" value="%s">
<input type="hidden" name="state" value="%s">
<button type="submit">Continue to GitHub</button>
</form>
<script nonce="{{nonce}}">document.forms[0].submit()</script>`,
		html.EscapeString(who), html.EscapeString(origin+"/v1/webhooks/github"), html.EscapeString(action),
		html.EscapeString(string(manifest)), html.EscapeString(state))
	writePage(w, http.StatusOK, "Create the flare-dispatch GitHub App", body)
}

const chooserBody = `<p>flare-dispatch needs a GitHub App of your own: it posts check-runs, receives webhooks
and mints short-lived tokens for the runs. Where should the App live?</p>
<form method="get" action="/v1/github/install/new">
<input type="hidden" name="owner" value="">
<button type="submit">My personal account</button>
</form>
<form method="get" action="/v1/github/install/new">
<label>Organization <input name="owner" required pattern="[A-Za-z0-9][A-Za-z0-9-]{0,38}"></label>
<button type="submit">Create in this organization</button>
</form>`

// AppCredentials is what GitHub's manifest conversion returns (the fields we use).
type AppCredentials struct {
	ID            int64  `json:"id"`
	Slug          string `json:"slug"`
	Name          string `json:"name"`
	HTMLURL       string `json:"html_url"`
	WebhookSecret string `json:"webhook_secret"`
	PEM           string `json:"pem"`
	ClientID      string `json:"client_id"`
	ClientSecret  string `json:"client_secret"`
	Owner         struct {
		Login string `json:"login"`
	} `json:"owner"`
}

// conversionError is why the code exchange failed: network, non_2xx or bad_shape.
type conversionError struct {
	reason string
	detail string
}

func (e *conversionError) Error() string { return e.reason + ": " + e.detail }

// convertManifest exchanges the one-time code: POST /app-manifests/{code}/conversions,
// unauthenticated (the code is the credential).
func (s *Server) convertManifest(ctx context.Context, code string) (AppCredentials, error) {
	var creds AppCredentials
	base := s.Config.GitHubAPIURL
	if base == "" {
		base = "https://api.github.com/"
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"app-manifests/"+url.PathEscape(code)+"/conversions", nil)
	if err != nil {
		return creds, &conversionError{"network", err.Error()}
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "FlareDispatch-Dispatcher")
	hc := s.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient
	}
	if hc == nil {
		return creds, &conversionError{"network", "no HTTP client configured (Deps.HTTPClient)"}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return creds, &conversionError{"network", err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return creds, &conversionError{"network", err.Error()}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &e)
		return creds, &conversionError{"non_2xx", fmt.Sprintf("GitHub answered %d %s", resp.StatusCode, e.Message)}
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		return creds, &conversionError{"bad_shape", "response is not the expected JSON: " + err.Error()}
	}
	if creds.ID <= 0 || creds.PEM == "" || creds.WebhookSecret == "" || creds.HTMLURL == "" {
		return creds, &conversionError{"bad_shape", "response lacks id, pem, webhook_secret or html_url"}
	}
	return creds, nil
}

func (s *Server) installed(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	code := q.Get("code")
	if code == "" {
		writeError(w, http.StatusBadRequest, "missing_code", "the code query parameter is required (GitHub adds it when it sends you back)", "field", "code")
		return
	}
	if !codeChars.Run(code, 1, 128) {
		writeError(w, http.StatusBadRequest, "invalid_code", "code must match ^[A-Za-z0-9_-]{1,128}$", "field", "code")
		return
	}
	if s.Config.HMACSecret == "" {
		writeError(w, http.StatusServiceUnavailable, "install_not_configured", "HMAC_SECRET is unset; it signs the manifest flow's state. Set it first.")
		return
	}
	st, err := s.verifyState(r, q.Get("state"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_state", err.Error(), "field", "state")
		return
	}
	ctx := r.Context()
	usedKey := "manifest-state:" + st.Nonce
	if _, used, err := s.KV.Get(ctx, usedKey); err == nil && used {
		writeError(w, http.StatusBadRequest, "invalid_state", "invalid state: this state was used already; start again at /v1/github/install/new", "field", "state")
		return
	}
	if err := s.KV.Put(ctx, usedKey, "1", stateTTL); err != nil {
		s.Log.Warn("manifest: recording the used state failed", "err", err)
	}
	// The cookie has done its job.
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: "", Path: "/v1/github/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})

	creds, err := s.convertManifest(ctx, code)
	if err == nil && st.Owner != "" && !strings.EqualFold(creds.Owner.Login, st.Owner) {
		err = &conversionError{"bad_shape", fmt.Sprintf("the App belongs to %q, not to %q the flow was started for", creds.Owner.Login, st.Owner)}
	}
	if err != nil {
		var ce *conversionError
		reason := "network"
		if errors.As(err, &ce) {
			reason = ce.reason
		}
		s.Log.Warn("manifest: code exchange failed", "reason", reason, "err", err)
		writePage(w, http.StatusBadGateway, "Creating the GitHub App failed",
			fmt.Sprintf(`<p>GitHub did not hand over the App's credentials (<code>%s</code>): %s</p>
<p>The code is valid for one hour and only once. <a href="/v1/github/install/new">Start again</a>.</p>`,
				html.EscapeString(reason), html.EscapeString(err.Error())))
		return
	}
	writePage(w, http.StatusOK, "Your GitHub App is ready", installedBody(creds))
}

// installedBody is the shown-once page: the secrets as commands to paste, then the
// install link.
func installedBody(c AppCredentials) string {
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, `<p>GitHub created <a href="%s">%s</a> (App id %d, owner %s). These credentials are shown
<strong>once</strong>: this page is not stored anywhere. Set them as secrets of the Worker now:</p>
<pre>`, esc(c.HTMLURL), esc(c.Name), c.ID, esc(c.Owner.Login))
	for _, kv := range [][2]string{
		{"GITHUB_APP_ID", strconv.FormatInt(c.ID, 10)},
		{"GITHUB_WEBHOOK_SECRET", c.WebhookSecret},
		{"GITHUB_APP_CLIENT_ID", c.ClientID},
		{"GITHUB_APP_CLIENT_SECRET", c.ClientSecret},
		{"GITHUB_APP_PRIVATE_KEY", c.PEM},
	} {
		b.WriteString(esc(fmt.Sprintf("printf '%%s' %s | npx wrangler secret put %s", shellQuote(kv[1]), kv[0])))
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, `</pre>
<p>For <code>flare up</code>, export the same names in its environment instead.</p>
<p>Then <a href="%s">install the App</a> on the repositories flare-dispatch should serve. Webhooks
teach flare-dispatch the installation of each repository, so dispatches need no
<code>installation_id</code>.</p>`, esc(strings.TrimRight(c.HTMLURL, "/")+"/installations/new"))
	return b.String()
}

// shellQuote quotes s for a POSIX shell: in single quotes, each quote inside closed, escaped and reopened.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writePage writes a small self-contained HTML page: no caching, no referrer, a strict
// CSP whose per-response nonce replaces {{nonce}} in body.
func writePage(w http.ResponseWriter, status int, title, body string) {
	n := make([]byte, 16)
	_, _ = rand.Read(n)
	nonce := base64.RawURLEncoding.EncodeToString(n)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+
		"'; form-action 'self' "+githubWeb+"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>%s</title>
<style nonce="%s">body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}pre{background:#f4f4f4;padding:1rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}form{margin:1rem 0}</style>
</head><body><h1>%s</h1>
%s
</body></html>
`, html.EscapeString(title), nonce, html.EscapeString(title), strings.ReplaceAll(body, "{{nonce}}", nonce))
}

const infoTokenCache = "flare-dispatch/token-cache/v1"

// TokenCacheKey is the key that seals installation tokens cached in KV
// by edge/github, derived from HMAC_SECRET.
func TokenCacheKey(cfg Config) []byte { return derive(cfg.HMACSecret, "", infoTokenCache) }
