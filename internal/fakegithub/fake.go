// Package fakegithub is the one fake GitHub REST API every test of the project
// uses: a stateful http.Handler, served with httptest, that speaks the real
// protocol closely enough that a client passing against it should pass
// against api.github.com.
//
// It holds GitHub Apps with RSA keys and verifies their JWTs, mints expiring
// installation tokens, binds installations to repositories, and keeps per
// repository: check-runs, Git objects (real SHA-1 ids), refs, pull requests
// and reviews. Requests are validated as GitHub does (422 with a GitHub-shaped
// JSON body, 404 for what the caller may not see, 401 "Bad credentials"),
// every response carries rate-limit headers, list endpoints paginate with Link
// headers, and faults (401, 403 secondary rate limit, 429, 5xx) can be queued
// for the next requests matching a path. Every call is recorded.
//
//	f, app := fakegithub.New(t)
//	inst := f.AddInstallation("acme/widgets")
//	client := github.New(github.Config{AppID: app.ID, PrivateKeyPEM: app.PrivateKeyPEM,
//		HTTP: f.HTTPClient(), BaseURL: f.URL(), Now: f.Now})
package fakegithub

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// App is a GitHub App registered with the fake.
type App struct {
	ID       int64
	Slug     string
	ClientID string
	// PrivateKeyPEM is PKCS#1 ("RSA PRIVATE KEY"), as GitHub hands it out.
	PrivateKeyPEM []byte
	// PrivateKeyPKCS8PEM is the same key as PKCS#8 ("PRIVATE KEY").
	PrivateKeyPKCS8PEM []byte
	Key                *rsa.PrivateKey
}

// Call is one request the fake received.
type Call struct {
	Method string
	Path   string // unescaped URL path, e.g. /repos/acme/widgets/check-runs
	Query  url.Values
	Body   []byte
	// Installation is the installation whose token authenticated the call;
	// App is the App whose JWT did. Both 0 when unauthenticated or refused.
	Installation int64
	App          int64
	Status       int
	Time         time.Time // the fake's clock
}

// DefaultPermissions are granted to an installation unless SetPermissions
// says otherwise: what flare-dispatch's writeback and reporting need.
var DefaultPermissions = map[string]string{
	"actions":       "read",
	"checks":        "write",
	"contents":      "write",
	"pull_requests": "write",
	"metadata":      "read",
}

// Fake is the fake GitHub. Create it with New; all methods are safe for
// concurrent use.
type Fake struct {
	t      testing.TB
	server *httptest.Server
	mux    *http.ServeMux

	mu            sync.Mutex
	frozen        bool
	clock         time.Time
	nextID        int64
	apps          map[int64]*appState
	installations map[int64]*installation
	repos         map[string]*repo // key: lower-case owner/name
	tokens        map[string]*token
	calls         []Call
	faults        []*queuedFault
	rateLimit     int
	buckets       map[string]*bucket
	manifests     map[string]*manifestCode // one-time manifest conversion codes
	requestSeq    int
}

type appState struct {
	App
	pub *rsa.PublicKey
}

type installation struct {
	id          int64
	appID       int64
	account     string
	repos       map[string]bool // lower-case owner/name
	permissions map[string]string
	suspended   bool
}

type token struct {
	value   string
	inst    int64
	expires time.Time
}

// New starts a fake GitHub for the test, closed when the test ends, with one
// App already registered.
func New(t testing.TB) (*Fake, App) {
	t.Helper()
	f := &Fake{
		t:             t,
		nextID:        1000,
		apps:          map[int64]*appState{},
		installations: map[int64]*installation{},
		repos:         map[string]*repo{},
		tokens:        map[string]*token{},
		buckets:       map[string]*bucket{},
		manifests:     map[string]*manifestCode{},
		rateLimit:     5000,
	}
	f.mux = http.NewServeMux()
	f.routes()
	f.server = httptest.NewServer(f)
	t.Cleanup(f.server.Close)
	return f, f.AddApp()
}

// URL is the API root with a trailing slash, for a client's BaseURL.
func (f *Fake) URL() string { return f.server.URL + "/" }

// HTTPClient is a client for the fake's server.
func (f *Fake) HTTPClient() *http.Client { return f.server.Client() }

// Now is the fake's clock: the real time unless SetNow froze it.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now()
}

func (f *Fake) now() time.Time {
	if f.frozen {
		return f.clock
	}
	return time.Now()
}

// SetNow freezes the fake's clock at t (JWT checks, token expiry, timestamps,
// rate-limit windows). Give the client the same clock: Now: f.Now.
func (f *Fake) SetNow(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen, f.clock = true, t
}

// Advance moves the clock forward, freezing it first if it was running.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock, f.frozen = f.now().Add(d), true
}

// SetRateLimit sets the hourly request budget of every App and installation
// (default 5000). Past it, calls get GitHub's primary rate-limit 403.
func (f *Fake) SetRateLimit(perHour int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rateLimit = perHour
}

func (f *Fake) id() int64 {
	f.nextID++
	return f.nextID
}

// AddApp registers another GitHub App with a fresh key.
func (f *Fake) AddApp() App {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addAppLocked()
}

func (f *Fake) addAppLocked() App {
	key := testKey(f.t, len(f.apps))
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		f.t.Fatalf("fakegithub: marshal key: %v", err)
	}
	id := int64(len(f.apps) + 1)
	a := App{
		ID:                 id,
		Slug:               fmt.Sprintf("flare-dispatch-test-%d", id),
		ClientID:           fmt.Sprintf("Iv1.fake%012d", id),
		PrivateKeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		PrivateKeyPKCS8PEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		Key:                key,
	}
	f.apps[id] = &appState{App: a, pub: &key.PublicKey}
	return a
}

// keys are generated once per test binary: 2048-bit generation is slow.
var (
	keysMu sync.Mutex
	keys   []*rsa.PrivateKey
)

func testKey(t testing.TB, i int) *rsa.PrivateKey {
	keysMu.Lock()
	defer keysMu.Unlock()
	for len(keys) <= i {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("fakegithub: generate key: %v", err)
		}
		keys = append(keys, k)
	}
	return keys[i]
}

// AddInstallation installs the first App on the repositories (creating any
// that do not exist, see AddRepo) and returns the installation id. All repos
// must share one owner, as on GitHub.
func (f *Fake) AddInstallation(repos ...string) int64 {
	f.t.Helper()
	return f.InstallApp(1, repos...)
}

// InstallApp installs the given App on the repositories.
func (f *Fake) InstallApp(appID int64, repos ...string) int64 {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.apps[appID] == nil {
		f.t.Fatalf("fakegithub: no app %d", appID)
	}
	in := &installation{id: f.id(), appID: appID, repos: map[string]bool{}, permissions: clonePerms(DefaultPermissions)}
	for _, full := range repos {
		owner, _, ok := strings.Cut(full, "/")
		if !ok {
			f.t.Fatalf("fakegithub: repo %q is not owner/name", full)
		}
		if in.account == "" {
			in.account = owner
		} else if !strings.EqualFold(in.account, owner) {
			f.t.Fatalf("fakegithub: installation on %s cannot include %s: one account per installation", in.account, full)
		}
		if f.repos[strings.ToLower(full)] == nil {
			f.addRepo(full, RepoOptions{})
		}
		in.repos[strings.ToLower(full)] = true
	}
	f.installations[in.id] = in
	return in.id
}

// SetPermissions replaces an installation's permissions, e.g.
// {"checks": "write", "contents": "read", "metadata": "read"}.
func (f *Fake) SetPermissions(inst int64, perms map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mustInstallation(inst).permissions = clonePerms(perms)
}

// SuspendInstallation makes token requests for it fail with 403.
func (f *Fake) SuspendInstallation(inst int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mustInstallation(inst).suspended = true
}

// RevokeTokens invalidates every token minted for the installation; calls
// with them get 401 "Bad credentials".
func (f *Fake) RevokeTokens(inst int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for v, tok := range f.tokens {
		if tok.inst == inst {
			delete(f.tokens, v)
		}
	}
}

// Tokens returns how many tokens have been minted for the installation and
// are still known (revoked ones are forgotten).
func (f *Fake) Tokens(inst int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, tok := range f.tokens {
		if tok.inst == inst {
			n++
		}
	}
	return n
}

func (f *Fake) mustInstallation(id int64) *installation {
	in := f.installations[id]
	if in == nil {
		f.t.Fatalf("fakegithub: no installation %d", id)
	}
	return in
}

func clonePerms(p map[string]string) map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out
}

// Calls returns every request received so far, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// CallsTo returns the calls whose "METHOD /path" matches pattern (see
// FailNext for the pattern syntax).
func (f *Fake) CallsTo(pattern string) []Call {
	m := parsePattern(pattern)
	var out []Call
	for _, c := range f.Calls() {
		if m.match(c.Method, c.Path) {
			out = append(out, c)
		}
	}
	return out
}

// ResetCalls forgets the recorded calls.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// ServeHTTP implements http.Handler. Requests are handled one at a time.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))

	f.mu.Lock()
	defer f.mu.Unlock()
	rec := &recorder{ResponseWriter: w}
	call := Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body, Time: f.now()}
	req := &request{f: f, w: rec, r: r, body: body, call: &call}
	f.serve(req)
	call.Status = rec.status
	if call.Status == 0 {
		call.Status = http.StatusOK
	}
	f.calls = append(f.calls, call)
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// request is one request being served, with what authentication found.
type request struct {
	f    *Fake
	w    http.ResponseWriter
	r    *http.Request
	body []byte
	call *Call

	app  *appState     // authenticated by JWT
	inst *installation // authenticated by installation token
	tok  *token
	repo *repo // for /repos/{owner}/{repo}/… routes
}

func (f *Fake) serve(q *request) {
	f.requestSeq++
	h := q.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Api-Version-Selected", "2022-11-28")
	h.Set("X-GitHub-Request-Id", fmt.Sprintf("FAKE:%04X:%06X", f.requestSeq>>16, f.requestSeq))

	if fault := f.takeFault(q.r.Method, q.r.URL.Path); fault != nil {
		fault.write(q)
		return
	}
	if q.r.Header.Get("User-Agent") == "" {
		f.rateHeaders(q, "anon")
		q.error(http.StatusForbidden, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).", "")
		return
	}
	if v := q.r.Header.Get("X-GitHub-Api-Version"); v != "" && v != "2022-11-28" && v != "2026-03-10" {
		q.error(http.StatusBadRequest, fmt.Sprintf("API version '%s' is not supported.", v), docRoot+"/overview/api-versions")
		return
	}
	if _, pattern := f.mux.Handler(q.r); pattern == "" { // unknown path or method: GitHub says 404
		f.rateHeaders(q, "anon")
		q.notFound()
		return
	}
	f.mux.ServeHTTP(q.w, q.r.WithContext(withRequest(q.r.Context(), q)))
}

// rateHeaders spends one request of the bucket and sets the x-ratelimit-*
// headers; it reports false (and has answered 403) when the budget is gone.
func (f *Fake) rateHeaders(q *request, key string) bool {
	now := f.now()
	b := f.buckets[key]
	limit := f.rateLimit
	if key == "anon" {
		limit = 60
	}
	if b == nil || !now.Before(b.reset) {
		b = &bucket{reset: now.Add(time.Hour).Truncate(time.Second)}
		f.buckets[key] = b
	}
	exhausted := b.used >= limit
	if !exhausted {
		b.used++
	}
	h := q.w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(limit-b.used, 0)))
	h.Set("X-RateLimit-Used", strconv.Itoa(b.used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(b.reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	if exhausted {
		h.Set("X-RateLimit-Remaining", "0")
		who := "your IP address"
		switch {
		case q.inst != nil:
			who = fmt.Sprintf("installation ID %d", q.inst.id)
		case q.app != nil:
			who = fmt.Sprintf("app ID %d", q.app.ID)
		}
		q.error(http.StatusForbidden, "API rate limit exceeded for "+who+".", docRoot+"/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit")
		return false
	}
	return true
}

type bucket struct {
	used  int
	reset time.Time
}

// docRoot prefixes documentation_url values.
const docRoot = "https://docs.github.com/rest"

// errorBody is GitHub's error JSON.
type errorBody struct {
	Message          string `json:"message"`
	Errors           []any  `json:"errors,omitempty"`
	DocumentationURL string `json:"documentation_url"`
	Status           string `json:"status"`
}

func (q *request) error(status int, message, doc string) {
	q.errorWith(status, message, doc, nil)
}

func (q *request) errorWith(status int, message, doc string, errs []any) {
	if doc == "" {
		doc = docRoot
	}
	q.json(status, errorBody{Message: message, Errors: errs, DocumentationURL: doc, Status: strconv.Itoa(status)})
}

func (q *request) notFound() {
	q.error(http.StatusNotFound, "Not Found", docRoot)
}

// fieldError is one entry of a 422 "Validation Failed" errors list.
type fieldError struct {
	Resource string `json:"resource"`
	Code     string `json:"code"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message,omitempty"`
}

func (q *request) invalid(doc string, errs ...fieldError) {
	list := make([]any, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	q.errorWith(http.StatusUnprocessableEntity, "Validation Failed", doc, list)
}

func (q *request) json(status int, v any) {
	buf, err := json.Marshal(v)
	if err != nil {
		q.f.t.Errorf("fakegithub: encode response: %v", err)
		status, buf = http.StatusInternalServerError, []byte(`{"message":"Server Error"}`)
	}
	q.w.WriteHeader(status)
	_, _ = q.w.Write(buf)
}

// decode reads the JSON body into v as GitHub does: malformed JSON is 400,
// a value of the wrong type 422. An empty body decodes as {}.
func (q *request) decode(v any, doc string) bool {
	body := bytes.TrimSpace(q.body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	err := json.Unmarshal(body, v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return true
	case errors.As(err, &typeErr):
		q.error(http.StatusUnprocessableEntity, fmt.Sprintf("Invalid request.\n\nFor 'properties/%s', %s is not a %s.", typeErr.Field, typeErr.Value, typeErr.Type), doc)
	default:
		q.error(http.StatusBadRequest, "Problems parsing JSON", doc)
	}
	return false
}

// paginate writes one page of items with GitHub's Link header; wrap, when
// not nil, turns the page into the response body (for {total_count, …}).
func (q *request) paginate(items []any, wrap func(page []any) any) {
	perPage, _ := strconv.Atoi(q.r.URL.Query().Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	perPage = min(perPage, 100)
	page, _ := strconv.Atoi(q.r.URL.Query().Get("page"))
	page = max(page, 1)
	last := max((len(items)+perPage-1)/perPage, 1)
	lo := min((page-1)*perPage, len(items))
	hi := min(lo+perPage, len(items))
	var links []string
	// GitHub keeps the caller's query as sent and puts page last.
	var keep []string
	for _, kv := range strings.Split(q.r.URL.RawQuery, "&") {
		if kv != "" && !strings.HasPrefix(kv, "page=") {
			keep = append(keep, kv)
		}
	}
	link := func(p int, rel string) {
		u := url.URL{Scheme: "http", Host: q.r.Host, Path: q.r.URL.Path,
			RawQuery: strings.Join(append(keep[:len(keep):len(keep)], "page="+strconv.Itoa(p)), "&")}
		links = append(links, fmt.Sprintf("<%s>; rel=%q", u.String(), rel))
	}
	if page > 1 {
		link(page-1, "prev")
	}
	if page < last {
		link(page+1, "next")
		link(last, "last")
	}
	if page > 1 {
		link(1, "first")
	}
	if len(links) > 0 {
		q.w.Header().Set("Link", strings.Join(links, ", "))
	}
	out := items[lo:hi]
	if out == nil {
		out = []any{}
	}
	if wrap != nil {
		q.json(http.StatusOK, wrap(out))
		return
	}
	q.json(http.StatusOK, out)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func timeJSON(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

var _ http.Handler = (*Fake)(nil)
