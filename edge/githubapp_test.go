package edge_test

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
)

var (
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="(manifest|state)" value="([^"]*)">`)
)

// manifestForm is what GET /v1/github/install/new?owner=… gave the browser.
type manifestForm struct {
	action, manifest, state string
	cookie                  *http.Cookie
	page                    reply
}

func (f *fixture) startManifest(t *testing.T, owner string) manifestForm {
	t.Helper()
	r := f.do(httptest.NewRequest(http.MethodGet, "/v1/github/install/new?owner="+url.QueryEscape(owner), nil))
	if r.status != 200 {
		t.Fatalf("install/new: %d %s", r.status, r.raw)
	}
	m := manifestForm{page: r}
	if a := formAction.FindStringSubmatch(r.raw); a != nil {
		m.action = html.UnescapeString(a[1])
	}
	for _, in := range hiddenInput.FindAllStringSubmatch(r.raw, -1) {
		if in[1] == "manifest" {
			m.manifest = html.UnescapeString(in[2])
		} else {
			m.state = html.UnescapeString(in[2])
		}
	}
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "flare_manifest_state" {
			m.cookie = c
		}
	}
	return m
}

func (f *fixture) installed(query string, cookie *http.Cookie) reply {
	req := httptest.NewRequest(http.MethodGet, "/v1/github/installed?"+query, nil)
	if cookie != nil {
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	return f.do(req)
}

func TestInstallNewShowsTheOwnerChooser(t *testing.T) {
	f := newFixture(t, edge.Config{})
	r := f.do(httptest.NewRequest(http.MethodGet, "/v1/github/install/new", nil))
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(r.raw, `name="owner" value=""`) || !strings.Contains(r.raw, `<input name="owner" required`) {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", r.header)
	}
	for _, bad := range []string{"-acme", "acme/x", "a b", strings.Repeat("a", 40), "<x>"} {
		r := f.do(httptest.NewRequest(http.MethodGet, "/v1/github/install/new?owner="+url.QueryEscape(bad), nil))
		if r.status != 400 || r.body["error"] != "invalid_owner" {
			t.Errorf("owner %q: %d %s", bad, r.status, r.raw)
		}
	}
}

func TestInstallNewPostsTheOriginRewrittenManifestWithABoundState(t *testing.T) {
	f := newFixture(t, edge.Config{})
	for owner, want := range map[string]string{"": "https://github.com/settings/apps/new?state=",
		"acme-corp": "https://github.com/organizations/acme-corp/settings/apps/new?state="} {
		m := f.startManifest(t, owner)
		if !strings.HasPrefix(m.action, want) || m.action != want+url.QueryEscape(m.state) || m.state == "" {
			t.Fatalf("owner %q: action %q state %q", owner, m.action, m.state)
		}
		var man struct {
			Name, URL      string
			RedirectURL    string `json:"redirect_url"`
			HookAttributes struct {
				URL string
			} `json:"hook_attributes"`
			DefaultPermissions map[string]string `json:"default_permissions"`
			DefaultEvents      []string          `json:"default_events"`
		}
		if err := json.Unmarshal([]byte(m.manifest), &man); err != nil {
			t.Fatalf("manifest %q: %v", m.manifest, err)
		}
		if man.URL != "https://runs.test" || man.HookAttributes.URL != "https://runs.test/v1/webhooks/github" ||
			man.RedirectURL != "https://runs.test/v1/github/installed" || man.DefaultPermissions["checks"] != "write" {
			t.Fatalf("manifest %+v", man)
		}
		c := m.cookie
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || !c.Secure || c.Path != "/v1/github/" || c.MaxAge != 3600 ||
			strings.Contains(m.state, c.Value) {
			t.Fatalf("cookie %+v (the state must not carry the nonce in clear)", c)
		}
		if !strings.Contains(m.page.raw, `<script nonce="`) || !strings.Contains(m.page.header.Get("Content-Security-Policy"), "form-action 'self' https://github.com") {
			t.Fatalf("page %s", m.page.raw)
		}
	}
}

func TestManifestCodeExchangeShowsTheCredentialsOnce(t *testing.T) {
	gh, _ := fakegithub.New(t)
	f := newFixture(t, edge.Config{GitHubAPIURL: gh.URL()}, func(d *edge.Deps) { d.HTTPClient = gh.HTTPClient() })
	m := f.startManifest(t, "acme")
	code, err := gh.CreateAppFromManifest([]byte(m.manifest), "acme")
	if err != nil {
		t.Fatalf("GitHub refuses our manifest: %v", err)
	}
	q := "code=" + code + "&state=" + url.QueryEscape(m.state)
	r := f.installed(q, m.cookie)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	apps := gh.ManifestApps()
	if len(apps) != 1 {
		t.Fatalf("%d apps created", len(apps))
	}
	app := apps[0]
	page := html.UnescapeString(r.raw)
	for _, want := range []string{
		"printf '%s' '" + strconv.FormatInt(app.ID, 10) + "' | npx wrangler secret put GITHUB_APP_ID",
		"printf '%s' '" + app.WebhookSecret + "' | npx wrangler secret put GITHUB_WEBHOOK_SECRET",
		"printf '%s' '" + app.ClientID + "' | npx wrangler secret put GITHUB_APP_CLIENT_ID",
		"printf '%s' '" + app.ClientSecret + "' | npx wrangler secret put GITHUB_APP_CLIENT_SECRET",
		"printf '%s' '" + strings.TrimSpace(string(app.PrivateKeyPEM)) + "\n' | npx wrangler secret put GITHUB_APP_PRIVATE_KEY",
		"https://github.com/apps/" + app.Slug + "/installations/new",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("headers %v", r.header)
	}
	if app.WebhookURL != "https://runs.test/v1/webhooks/github" || app.Permissions["pull_requests"] != "write" {
		t.Fatalf("app %+v", app)
	}
	// The state is spent, and the code too (GitHub answers 404: 502 non_2xx).
	if r := f.installed(q, m.cookie); r.status != 400 || r.body["error"] != "invalid_state" {
		t.Fatalf("state reuse: %d %s", r.status, r.raw)
	}
	m2 := f.startManifest(t, "acme")
	r = f.installed("code="+code+"&state="+url.QueryEscape(m2.state), m2.cookie)
	if r.status != 502 || !strings.Contains(r.raw, "non_2xx") {
		t.Fatalf("code reuse: %d %s", r.status, r.raw)
	}
}

func TestManifestStateMustBeBoundToTheBrowser(t *testing.T) {
	gh, _ := fakegithub.New(t)
	now := time.Now()
	f := newFixture(t, edge.Config{GitHubAPIURL: gh.URL()}, func(d *edge.Deps) {
		d.HTTPClient = gh.HTTPClient()
		d.Now = func() time.Time { return now }
	})
	m := f.startManifest(t, "")
	other := f.startManifest(t, "")
	code, _ := gh.CreateAppFromManifest([]byte(m.manifest), "")
	cases := []struct {
		name   string
		query  string
		cookie *http.Cookie
	}{
		{"no state", "code=" + code, m.cookie},
		{"no cookie", "code=" + code + "&state=" + url.QueryEscape(m.state), nil},
		{"another browser's cookie", "code=" + code + "&state=" + url.QueryEscape(m.state), other.cookie},
		{"tampered state", "code=" + code + "&state=" + url.QueryEscape("x"+m.state), m.cookie},
		{"state of another deploy", "code=" + code + "&state=" + url.QueryEscape(strings.Split(m.state, ".")[0]+".AAAA"), m.cookie},
	}
	for _, c := range cases {
		r := f.installed(c.query, c.cookie)
		if r.status != 400 || r.body["error"] != "invalid_state" {
			t.Errorf("%s: %d %s", c.name, r.status, r.raw)
		}
	}
	if len(gh.CallsTo("POST /app-manifests/**")) != 0 {
		t.Fatal("a refused state still exchanged the code")
	}
	now = now.Add(61 * time.Minute)
	if r := f.installed("code="+code+"&state="+url.QueryEscape(m.state), m.cookie); r.status != 400 || !strings.Contains(r.raw, "expired") {
		t.Fatalf("expired: %d %s", r.status, r.raw)
	}
	if r := f.installed("state=x", m.cookie); r.status != 400 || r.body["error"] != "missing_code" {
		t.Fatalf("missing code: %d %s", r.status, r.raw)
	}
	if r := f.installed("code=../../x&state=x", m.cookie); r.status != 400 || r.body["error"] != "invalid_code" {
		t.Fatalf("bad code: %d %s", r.status, r.raw)
	}
}

func TestManifestExchangeFailuresAre502AndEverythingIsEscaped(t *testing.T) {
	answer := func(status int, body string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.Header.Get("User-Agent") != "FlareDispatch-Dispatcher" ||
				r.Header.Get("Authorization") != "" || r.Header.Get("X-GitHub-Api-Version") != "2022-11-28" {
				w.WriteHeader(418)
				return
			}
			w.WriteHeader(status)
			w.Write([]byte(body))
		}))
		t.Cleanup(s.Close)
		return s
	}
	evil := `{"id":7,"slug":"x","name":"<script>alert(1)</script>","html_url":"https://github.com/apps/x\"><img src=x>",
		"webhook_secret":"a'b\"c<d>&e","pem":"-----BEGIN RSA PRIVATE KEY-----\nAB'CD\n-----END RSA PRIVATE KEY-----\n",
		"client_id":"Iv1.x","client_secret":"s","owner":{"login":"<b>o</b>"}}`
	closed := answer(200, "")
	closed.Close()
	cases := []struct {
		name   string
		srv    *httptest.Server
		status int
		reason string
	}{
		{"escaped", answer(201, evil), 200, ""},
		{"github 404", answer(404, `{"message":"Not Found"}`), 502, "non_2xx"},
		{"not json", answer(201, `<html>`), 502, "bad_shape"},
		{"missing fields", answer(201, `{"id":7}`), 502, "bad_shape"},
		{"network", closed, 502, "network"},
	}
	for _, c := range cases {
		f := newFixture(t, edge.Config{GitHubAPIURL: c.srv.URL})
		m := f.startManifest(t, "")
		r := f.installed("code=abc&state="+url.QueryEscape(m.state), m.cookie)
		if r.status != c.status || !strings.Contains(r.raw, c.reason) {
			t.Errorf("%s: %d %s", c.name, r.status, r.raw)
			continue
		}
		if c.status == 200 {
			for _, raw := range []string{"<script>alert", "<img", "<b>o", `a'b"c<d>`, "AB'CD"} {
				if strings.Contains(r.raw, raw) {
					t.Errorf("page has unescaped %q:\n%s", raw, r.raw)
				}
			}
			page := html.UnescapeString(r.raw)
			if !strings.Contains(page, `printf '%s' 'a'\''b"c<d>&e' | npx wrangler secret put GITHUB_WEBHOOK_SECRET`) {
				t.Errorf("secret not shell-quoted:\n%s", page)
			}
		}
	}
}
