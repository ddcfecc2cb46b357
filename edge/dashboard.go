package edge

import (
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// The dashboard (GET /): the recent executions, for administrators. Authorization is
// the admin Bearer token as on every admin route, or the session cookie POST /session
// sets from it (a browser cannot send a Bearer header from a link). In production
// Cloudflare Access sits in front as well (specs/cloudflare.md).

//go:embed viewer_assets/dashboard.html
var dashboardHTML string // @NONCE@ and @MAIN@ slots (fillPage, viewer.go)

const loginForm = `<p>Sign in with the deploy's ADMIN_TOKEN.</p>
<form method="post" action="/session"><input name="token" type="password" autocomplete="current-password"> <button type="submit">sign in</button></form>`

const sessionCookie = "flare_session"

// sessionValue is what the cookie holds: a MAC of the admin token, never the token,
// so a leaked cookie does not give the Bearer (and rotating the token ends sessions).
func sessionValue(adminToken string) string {
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("flare-dispatch/dashboard-session/v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// dashboardAuthorized accepts the Bearer (and then sets the session cookie) or the
// cookie; otherwise it writes 401 (with a sign-in form) or 503.
func (s *Server) dashboardAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.Config.AdminToken == "" {
		writeError(w, http.StatusServiceUnavailable, "admin_not_configured", "ADMIN_TOKEN is unset on this deploy")
		return false
	}
	if c, err := r.Cookie(sessionCookie); err == nil && constantEqual(c.Value, sessionValue(s.Config.AdminToken)) {
		return true
	}
	if bearer(r) != "" && constantEqual(bearer(r), s.Config.AdminToken) {
		s.setSession(w, r)
		return true
	}
	nonce := newNonce()
	securePageHeaders(w, nonce)
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, fillPage(dashboardHTML, "@NONCE@", nonce, "@MAIN@", loginForm))
	return false
}

func (s *Server) setSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sessionValue(s.Config.AdminToken), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
		MaxAge: 12 * 3600})
}

// dashboardLogin is the sign-in form's target: the admin token in, a cookie out.
func (s *Server) dashboardLogin(w http.ResponseWriter, r *http.Request) {
	if s.Config.AdminToken == "" {
		writeError(w, http.StatusServiceUnavailable, "admin_not_configured", "ADMIN_TOKEN is unset on this deploy")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil || !constantEqual(r.PostForm.Get("token"), s.Config.AdminToken) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "token: not the ADMIN_TOKEN", "field", "token")
		return
	}
	s.setSession(w, r)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// dashStatuses are the status filter's choices.
var dashStatuses = []actors.Status{actors.StatusQueued, actors.StatusAdmitted, actors.StatusLeased, actors.StatusRunning,
	actors.StatusWaiting, actors.StatusSuccess, actors.StatusFailure, actors.StatusCancelled, actors.StatusTimedOut}

type dashRow struct {
	ID, Run, Repo, SHA, Status, Started, QueueWait, Duration, Cost, Link string
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	if !s.dashboardAuthorized(w, r) {
		return
	}
	q := r.URL.Query()
	f := ExecutionFilter{Run: q.Get("run"), Repo: q.Get("repo"), Status: q.Get("status"), Limit: 200}
	list, err := s.Meta.ListExecutions(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return
	}
	now := s.Now()
	rows := make([]dashRow, 0, len(list))
	for _, e := range list {
		row := dashRow{ID: e.ID, Run: e.Run, Repo: e.Repo, SHA: short(e.SHA, 10), Status: e.Status,
			Duration: span(e.StartedAt, e.CompletedAt, now),
			Link:     "/logs/" + url.PathEscape(e.ID) + "?t=" + url.QueryEscape(LogToken(s.Config, e.ID))}
		if !e.StartedAt.IsZero() {
			row.Started = e.StartedAt.UTC().Format("2006-01-02 15:04:05")
		}
		if !e.FirstStepAt.IsZero() {
			row.QueueWait = span(e.StartedAt, e.FirstStepAt, now)
		}
		if e.Cost != nil {
			row.Cost = USD(e.Cost.CloudflareMicro)
		}
		if s.Config.HMACSecret == "" {
			row.Link = "" // no key material: no viewer links (authorizeLogs would 503)
		}
		rows = append(rows, row)
	}
	totals, err := s.Meta.CostTotals(r.Context(), CostFilter{Repo: f.Repo})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return
	}
	nonce := newNonce()
	securePageHeaders(w, nonce)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, fillPage(dashboardHTML, "@NONCE@", nonce, "@MAIN@", dashboardMain(f, rows)+costTotals(totals)))
}

// costTotals is the dashboard's cost table: per repository and month, Cloudflare's
// list price of what ran next to the GitHub-hosted runner price of the same time.
func costTotals(ts []CostTotal) string {
	var b strings.Builder
	b.WriteString(`<h2>Cost per repository and month</h2>
<table id="costs">
<thead><tr><th>Month (UTC)</th><th>Repo</th><th>Executions</th><th>Cloudflare</th><th>GitHub-hosted runner</th></tr></thead>
<tbody>
`)
	for _, t := range ts {
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td></tr>\n",
			esc(t.Month), esc(t.Repo), t.Executions, USD(t.CloudflareMicro), USD(t.GitHubMicro))
	}
	if len(ts) == 0 {
		b.WriteString(`<tr><td colspan="5">no costs recorded yet</td></tr>`)
	}
	fmt.Fprintf(&b, "</tbody>\n</table>\n<p class=\"note\">List prices of %s before free allowances (specs/cost.md); a fan-out counts once, with its children.</p>", esc(PriceTable.Date))
	return b.String()
}

func dashboardMain(f ExecutionFilter, rows []dashRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<form class="f" method="get" action="/">
<input name="run" placeholder="run" value="%s">
<input name="repo" placeholder="owner/repo" value="%s">
<select name="status"><option value="">any status</option>`, esc(f.Run), esc(f.Repo))
	for _, st := range dashStatuses {
		sel := ""
		if string(st) == f.Status {
			sel = " selected"
		}
		fmt.Fprintf(&b, "<option%s>%s</option>", sel, esc(string(st)))
	}
	b.WriteString(`</select>
<button type="submit">filter</button> <a href="/">clear</a>
</form>
<table id="executions">
<thead><tr><th>Execution</th><th>Run</th><th>Repo</th><th>SHA</th><th>Status</th><th>Started (UTC)</th><th>Queue wait</th><th>Duration</th><th>Cost</th></tr></thead>
<tbody>
`)
	for _, r := range rows {
		id := esc(r.ID)
		if r.Link != "" {
			fmt.Fprintf(&b, `<tr data-href="%s">`, esc(r.Link))
			id = fmt.Sprintf(`<a href="%s">%s</a>`, esc(r.Link), id)
		} else {
			b.WriteString("<tr>")
		}
		fmt.Fprintf(&b, `<td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td><td class="st-%s">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`+"\n",
			id, esc(r.Run), esc(r.Repo), esc(r.SHA), esc(r.Status), esc(r.Status), esc(r.Started), esc(r.QueueWait), esc(r.Duration), esc(r.Cost))
	}
	if len(rows) == 0 {
		b.WriteString(`<tr><td colspan="9">no executions</td></tr>`)
	}
	b.WriteString("</tbody>\n</table>")
	return b.String()
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
