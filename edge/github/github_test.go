package github_test

// The one suite of the GitHub App client, against internal/fakegithub (the stateful
// fake): it holds what the go-github client's and the Worker client's suites checked
// before the two became this package.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/github"
	"github.com/flare-dispatch/flare-dispatch/internal/ci"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
)

const repo = "acme/widgets"

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// sleeper records the client's waits instead of sleeping.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return nil
}

func (s *sleeper) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// doer is an edge.HTTPDoer from a function (faults on the wire).
type doer func(*http.Request) (*http.Response, error)

func (d doer) Do(r *http.Request) (*http.Response, error) { return d(r) }

type env struct {
	f      *fakegithub.Fake
	app    fakegithub.App
	inst   int64
	c      *github.Client
	sleeps *sleeper
	head   string // head of main
}

func (e *env) config() github.Config {
	return github.Config{AppID: e.app.ID, PrivateKeyPEM: e.app.PrivateKeyPEM, HTTP: e.f.HTTPClient(),
		BaseURL: e.f.URL(), Now: e.f.Now, Sleep: e.sleeps.sleep}
}

func newEnv(t *testing.T, opts fakegithub.RepoOptions, mod ...func(*github.Config)) *env {
	t.Helper()
	f, app := fakegithub.New(t)
	f.SetNow(t0)
	if opts.Files != nil {
		f.AddRepo(repo, opts)
	}
	e := &env{f: f, app: app, sleeps: &sleeper{}}
	e.inst = f.AddInstallation(repo)
	e.head = f.HeadSHA(repo, "main")
	cfg := e.config()
	for _, m := range mod {
		m(&cfg)
	}
	c, err := github.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

func setup(t *testing.T, mod ...func(*github.Config)) *env {
	t.Helper()
	return newEnv(t, fakegithub.RepoOptions{}, mod...)
}

// create opens a check-run through the Checks port (the first report of an execution).
func create(c *github.Client, ctx context.Context, inst int64, repo, name, sha, details, summary string) (int64, error) {
	return c.Report(ctx, edge.Execution{ID: "x", Repo: repo, SHA: sha},
		edge.CheckReport{Name: name, Status: "in_progress", DetailsURL: details, Summary: summary, Install: inst})
}

// update reports on an existing check-run; a conclusion completes it.
func update(c *github.Client, ctx context.Context, inst int64, repo string, id int64, r edge.CheckReport) error {
	r.Install = inst
	if r.Conclusion != "" {
		r.Status = "completed"
	}
	_, err := c.Report(ctx, edge.Execution{ID: "x", Repo: repo, CheckRunID: id}, r)
	return err
}

func (e *env) create(t *testing.T) int64 {
	t.Helper()
	id, err := create(e.c, context.Background(), e.inst, repo, "run", e.head, "", "x")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func asGitHubError(t *testing.T, err error) *edge.GitHubError {
	t.Helper()
	var ge *edge.GitHubError
	if !errors.As(err, &ge) {
		t.Fatalf("error %v (%T) is not an *edge.GitHubError", err, err)
	}
	return ge
}

func TestConfigIsChecked(t *testing.T) {
	_, app := fakegithub.New(t)
	for name, cfg := range map[string]github.Config{
		"no app":    {PrivateKeyPEM: app.PrivateKeyPEM, HTTP: http.DefaultClient},
		"no key":    {AppID: 1, HTTP: http.DefaultClient},
		"not pem":   {AppID: 1, PrivateKeyPEM: []byte("nope"), HTTP: http.DefaultClient},
		"no client": {AppID: 1, PrivateKeyPEM: app.PrivateKeyPEM},
		"short key": {AppID: 1, PrivateKeyPEM: app.PrivateKeyPEM, HTTP: http.DefaultClient, KV: newClockKV(time.Now), CacheKey: []byte("x")},
		"base url":  {AppID: 1, PrivateKeyPEM: app.PrivateKeyPEM, HTTP: http.DefaultClient, BaseURL: "api.github.com"},
	} {
		if _, err := github.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCheckRunLifecycle(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	id, err := create(e.c, ctx, e.inst, repo, "flare-dispatch/offload-test", e.head, "https://example.com/logs/x", "Execution `x` started.")
	if err != nil {
		t.Fatal(err)
	}
	cr, ok := e.f.CheckRun(repo, id)
	if !ok {
		t.Fatalf("check-run %d not stored", id)
	}
	if cr.Status != "in_progress" || cr.Name != "flare-dispatch/offload-test" || cr.HeadSHA != e.head ||
		cr.DetailsURL != "https://example.com/logs/x" || cr.Summary != "Execution `x` started." || !cr.StartedAt.Equal(t0) {
		t.Fatalf("created run = %+v", cr)
	}

	queued := "Queued — waiting for a sandbox slot behind 2 runs (1/1 in use); times out " + t0.Add(20*time.Minute).UTC().Format("15:04") + " UTC"
	if err := update(e.c, ctx, e.inst, repo, id, edge.CheckReport{Title: "Queued", Summary: queued}); err != nil {
		t.Fatal(err)
	}
	cr, _ = e.f.CheckRun(repo, id)
	if cr.Status != "in_progress" || cr.Summary != queued || cr.Title != "Queued" {
		t.Fatalf("queued run = %+v", cr)
	}

	e.f.Advance(time.Minute)
	if err := update(e.c, ctx, e.inst, repo, id, edge.CheckReport{Conclusion: "success", Summary: "✓ offload-test — execution succeeded."}); err != nil {
		t.Fatal(err)
	}
	cr, _ = e.f.CheckRun(repo, id)
	if cr.Status != "completed" || cr.Conclusion != "success" || !cr.CompletedAt.Equal(t0.Add(time.Minute)) || cr.Title != "Succeeded" {
		t.Fatalf("completed run = %+v", cr)
	}
	for _, c := range e.f.CallsTo("/repos/acme/widgets/**") {
		if c.Installation != e.inst {
			t.Errorf("%s %s authenticated as installation %d, want %d", c.Method, c.Path, c.Installation, e.inst)
		}
	}
}

func TestEveryConclusionCompletes(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for _, c := range []string{"success", "failure", "neutral", "cancelled", "timed_out"} {
		id := e.create(t)
		if err := update(e.c, ctx, e.inst, repo, id, edge.CheckReport{Conclusion: c, Summary: "done"}); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if cr, _ := e.f.CheckRun(repo, id); cr.Conclusion != c {
			t.Fatalf("conclusion = %q, want %q", cr.Conclusion, c)
		}
	}
	e.f.ResetCalls()
	err := update(e.c, ctx, e.inst, repo, 1, edge.CheckReport{Conclusion: "stale"})
	if err == nil || errors.As(err, new(*edge.GitHubError)) || len(e.f.CallsTo("PATCH /**")) != 0 {
		t.Fatalf("conclusion stale: err = %v, want a local error and nothing sent", err)
	}
}

func TestCompletedRunCannotGoBackInProgress(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	id := e.create(t)
	if err := update(e.c, ctx, e.inst, repo, id, edge.CheckReport{Conclusion: "failure", Summary: "x"}); err != nil {
		t.Fatal(err)
	}
	err := update(e.c, ctx, e.inst, repo, id, edge.CheckReport{Summary: "queued again"})
	if ge := asGitHubError(t, err); ge.Status != 422 || ge.Reason != github.ReasonOther {
		t.Fatalf("err = %v", err)
	}
}

func TestNoRetryOn422(t *testing.T) {
	e := setup(t)
	_, err := create(e.c, context.Background(), e.inst, repo, "run", strings.Repeat("f", 40), "", "x")
	ge := asGitHubError(t, err)
	if ge.Status != 422 || ge.Reason != github.ReasonOther || !strings.Contains(ge.Message, "No commit found") {
		t.Fatalf("err = %v", err)
	}
	if n := len(e.f.CallsTo("POST /repos/acme/widgets/check-runs")); n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}
	if len(e.sleeps.got()) != 0 {
		t.Fatalf("slept %v", e.sleeps.got())
	}
}

func TestUpdateOfAnotherReposRunIs404(t *testing.T) {
	e := setup(t)
	e.f.AddRepo("acme/other", fakegithub.RepoOptions{})
	other := e.f.AddInstallation("acme/other")
	id, err := create(e.c, context.Background(), other, "acme/other", "run", e.f.HeadSHA("acme/other", "main"), "", "x")
	if err != nil {
		t.Fatal(err)
	}
	err = update(e.c, context.Background(), e.inst, repo, id, edge.CheckReport{Summary: "y"})
	if ge := asGitHubError(t, err); ge.Status != 404 {
		t.Fatalf("err = %v", err)
	}
}

func TestInstallationTokenCachedUntilAMinuteBeforeExpiry(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	mints := func() int { return len(e.f.CallsTo(fmt.Sprintf("POST /app/installations/%d/access_tokens", e.inst))) }
	e.create(t)
	e.create(t)
	if mints() != 1 {
		t.Fatalf("%d token requests for two calls, want 1", mints())
	}
	e.f.Advance(58*time.Minute + 30*time.Second) // 90 s left: still used
	e.create(t)
	if mints() != 1 {
		t.Fatalf("token re-minted with 90 s left")
	}
	e.f.Advance(time.Minute) // 30 s left: refreshed
	e.create(t)
	if mints() != 2 {
		t.Fatalf("%d token requests after the token got within 60 s of expiry, want 2", mints())
	}
	tok, exp, err := e.c.RepoToken(ctx, repo, e.inst)
	if err != nil || !strings.HasPrefix(tok, "ghs_") || !exp.Equal(e.f.Now().Add(time.Hour)) {
		t.Fatalf("RepoToken = %q, %v, %v", tok, exp, err)
	}
}

// clockKV is an edge.KV with expiry on a given clock (as Workers KV and sqlmeta).
type clockKV struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]string
	exp map[string]time.Time
}

func newClockKV(now func() time.Time) *clockKV {
	return &clockKV{now: now, m: map[string]string{}, exp: map[string]time.Time{}}
}

func (k *clockKV) Get(_ context.Context, key string) (string, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if ok && !k.exp[key].IsZero() && !k.now().Before(k.exp[key]) {
		return "", false, nil
	}
	return v, ok, nil
}

func (k *clockKV) Put(_ context.Context, key, value string, ttl time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = value
	k.exp[key] = time.Time{}
	if ttl > 0 {
		k.exp[key] = k.now().Add(ttl)
	}
	return nil
}

var _ edge.KV = (*clockKV)(nil)

func TestKVTokenCacheSharesSealedTokensUntilShortlyBeforeExpiry(t *testing.T) {
	e := setup(t)
	kv := newClockKV(e.f.Now)
	key := edge.TokenCacheKey(edge.Config{HMACSecret: "s3cret"})
	ctx := context.Background()
	mints := func() int { return len(e.f.CallsTo("POST /app/installations/*/access_tokens")) }
	client := func(k []byte) *github.Client { // another isolate: its own memory, the same KV
		cfg := e.config()
		cfg.KV, cfg.CacheKey = kv, k
		c, err := github.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tok, _, err := client(key).RepoToken(ctx, repo, e.inst)
	if err != nil {
		t.Fatal(err)
	}
	if len(kv.m) != 1 {
		t.Fatalf("KV = %v, want one entry", kv.m)
	}
	for k, v := range kv.m {
		if k != fmt.Sprintf("install-token:%d", e.inst) || strings.Contains(v, tok) || strings.Contains(v, "ghs_") {
			t.Fatalf("KV holds %s = %s (token in clear?)", k, v)
		}
		// The entry expires when the client would stop using the token (fails if
		// kvPut's TTL is the token's whole life, as it was in the Worker's client).
		if got := kv.exp[k].Sub(e.f.Now()); got != 59*time.Minute {
			t.Fatalf("KV entry lives %s, want until a minute before the token", got)
		}
	}
	if tok2, _, err := client(key).RepoToken(ctx, repo, e.inst); err != nil || tok2 != tok || mints() != 1 {
		t.Fatalf("second client: %v, same token %v, %d mints", err, tok2 == tok, mints())
	}
	// A deploy with another HMAC_SECRET cannot open the entry: a miss, a fresh token.
	other := edge.TokenCacheKey(edge.Config{HMACSecret: "rotated"})
	if _, _, err := client(other).RepoToken(ctx, repo, e.inst); err != nil || mints() != 2 {
		t.Fatalf("other key: %v, %d mints", err, mints())
	}
	// Shortly before expiry the entry is gone and a new token is minted.
	e.f.Advance(59*time.Minute + 10*time.Second)
	if _, _, err := client(key).RepoToken(ctx, repo, e.inst); err != nil || mints() != 3 {
		t.Fatalf("near expiry: %v, %d mints", err, mints())
	}
}

func TestRevokedTokenIsReplacedOnce(t *testing.T) {
	e := setup(t)
	id := e.create(t)
	e.f.RevokeTokens(e.inst)
	id2 := e.create(t)
	var got []string
	for _, c := range e.f.Calls() {
		got = append(got, fmt.Sprintf("%s %s %d", c.Method, c.Path, c.Status))
	}
	want := []string{
		fmt.Sprintf("POST /app/installations/%d/access_tokens 201", e.inst),
		"POST /repos/acme/widgets/check-runs 201",
		fmt.Sprintf("PATCH /repos/acme/widgets/check-runs/%d 200", id),
		"POST /repos/acme/widgets/check-runs 401",
		fmt.Sprintf("POST /app/installations/%d/access_tokens 201", e.inst),
		"POST /repos/acme/widgets/check-runs 201",
		fmt.Sprintf("PATCH /repos/acme/widgets/check-runs/%d 200", id2),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := e.f.Tokens(e.inst); n != 1 {
		t.Fatalf("%d live tokens, want the one fresh token", n)
	}
	// A token refused even when fresh is reported, not looped on.
	e.f.FailNext(5, "POST /repos/acme/widgets/check-runs", fakegithub.BadCredentials())
	_, err := create(e.c, context.Background(), e.inst, repo, "run", e.head, "", "x")
	if ge := asGitHubError(t, err); ge.Reason != github.ReasonUnauthorized || ge.Status != 401 {
		t.Fatalf("err = %v", err)
	}
	if n := len(e.f.CallsTo("POST /repos/acme/widgets/check-runs")); n != 5 {
		t.Fatalf("%d check-run POSTs, want 5 (3 earlier + refused, refreshed, refused)", n)
	}
}

func TestConcurrentCallsShareOneTokenRequest(t *testing.T) {
	e := setup(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := create(e.c, context.Background(), e.inst, repo, "run", e.head, "", "x")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.f.CallsTo("POST /app/installations/*/access_tokens")); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

func TestJWTRejected(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)})
	cases := map[string]func(*github.Config, *fakegithub.Fake){
		"wrong key": func(c *github.Config, _ *fakegithub.Fake) { c.PrivateKeyPEM = otherPEM },
		"expired": func(c *github.Config, f *fakegithub.Fake) {
			c.Now = func() time.Time { return f.Now().Add(-20 * time.Minute) }
		},
		"issued in the future": func(c *github.Config, f *fakegithub.Fake) {
			c.Now = func() time.Time { return f.Now().Add(5 * time.Minute) }
		},
		"unknown app": func(c *github.Config, _ *fakegithub.Fake) { c.AppID = 99 },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			cfg := e.config()
			mod(&cfg, e.f)
			c, err := github.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = create(c, context.Background(), e.inst, repo, "run", e.head, "", "x")
			ge := asGitHubError(t, err)
			if ge.Status != 401 || ge.Reason != github.ReasonUnauthorized {
				t.Fatalf("err = %v", err)
			}
			if n := len(e.f.Calls()); n != 1 {
				t.Fatalf("%d calls, want 1 (no retry of a refused JWT)", n)
			}
			if len(e.f.CallsTo("/repos/**")) != 0 {
				t.Fatal("repository called without a token")
			}
		})
	}
}

func TestPrivateKeyFormats(t *testing.T) {
	_, app := fakegithub.New(t)
	oneLine := strings.ReplaceAll(string(app.PrivateKeyPKCS8PEM), "\n", `\n`)
	for name, key := range map[string][]byte{
		"pkcs1": app.PrivateKeyPEM, "pkcs8": app.PrivateKeyPKCS8PEM, "escaped newlines": []byte(oneLine),
	} {
		t.Run(name, func(t *testing.T) {
			e := setup(t, func(c *github.Config) { c.PrivateKeyPEM = key })
			e.create(t)
		})
	}
}

func TestJWTClaims(t *testing.T) {
	e := setup(t)
	var jwt string
	cfg := e.config()
	cfg.HTTP = doer(func(r *http.Request) (*http.Response, error) {
		jwt = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		return e.f.HTTPClient().Do(r)
	})
	c, err := github.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.InstallationForRepo(context.Background(), repo); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("jwt %q", jwt)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Iat, Exp, Iss int64 }
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Iat != t0.Unix()-60 || claims.Exp != t0.Add(9*time.Minute).Unix() || claims.Iss != e.app.ID {
		t.Fatalf("claims = %+v", claims)
	}
}

func TestInstallationLookupByRepo(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	got, err := e.c.InstallationForRepo(ctx, repo)
	if err != nil || got != e.inst {
		t.Fatalf("InstallationForRepo = %d, %v; want %d", got, err, e.inst)
	}
	// inst 0 resolves from the repository, remembered for a while.
	if _, err := create(e.c, ctx, 0, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	if c := e.f.CallsTo("GET /repos/acme/widgets/installation"); len(c) != 1 || c[0].App != e.app.ID {
		t.Fatalf("installation lookups = %+v, want one with the App JWT", c)
	}
	e.f.AddRepo("acme/elsewhere", fakegithub.RepoOptions{})
	_, err = e.c.InstallationForRepo(ctx, "acme/elsewhere")
	if ge := asGitHubError(t, err); ge.Status != 404 || ge.Reason != github.ReasonOther {
		t.Fatalf("err = %v", err)
	}
	if _, err := e.c.InstallationForRepo(ctx, "not-a-repo"); err == nil || !strings.Contains(err.Error(), "not-a-repo") {
		t.Fatalf("bad repo name: err = %v", err)
	}
}

func TestRetries(t *testing.T) {
	const path = "POST /repos/acme/widgets/check-runs"
	cases := []struct {
		name      string
		fault     fakegithub.Fault
		n         int
		wantWaits []time.Duration // exact; nil means "n waits of any length"
	}{
		{"502 twice", fakegithub.ServerError(502), 2, nil},
		{"503 with Retry-After", fakegithub.ServerErrorRetryAfter(503, time.Second), 1, []time.Duration{time.Second}},
		{"429 with Retry-After", fakegithub.TooManyRequests(time.Second), 1, []time.Duration{time.Second}},
		{"429 twice", fakegithub.TooManyRequests(2 * time.Second), 2, []time.Duration{2 * time.Second, 2 * time.Second}},
		{"403 secondary rate limit", fakegithub.SecondaryRateLimit(3 * time.Second), 1, []time.Duration{3 * time.Second}},
		{"403 primary rate limit", fakegithub.PrimaryRateLimit(5 * time.Second), 1, []time.Duration{5 * time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.f.FailNext(tc.n, path, tc.fault)
			id := e.create(t)
			if len(e.f.CheckRuns(repo)) != 1 || e.f.CheckRuns(repo)[0].ID != id {
				t.Fatalf("runs = %+v", e.f.CheckRuns(repo))
			}
			if n := len(e.f.CallsTo(path)); n != tc.n+1 {
				t.Fatalf("%d attempts, want %d", n, tc.n+1)
			}
			waits := e.sleeps.got()
			if len(waits) != tc.n {
				t.Fatalf("waits = %v, want %d", waits, tc.n)
			}
			if tc.wantWaits != nil && fmt.Sprint(waits) != fmt.Sprint(tc.wantWaits) {
				t.Fatalf("waits = %v, want %v", waits, tc.wantWaits)
			}
		})
	}
	t.Run("reads too", func(t *testing.T) {
		e := setup(t)
		e.f.FailNext(1, "GET /repos/acme/widgets", fakegithub.TooManyRequests(2*time.Second))
		if _, err := e.c.Repository(context.Background(), e.inst, repo); err != nil {
			t.Fatalf("after one 429: %v", err)
		}
		if w := e.sleeps.got(); len(w) != 1 || w[0] != 2*time.Second {
			t.Fatalf("slept %v, want [2s] (Retry-After)", w)
		}
	})
}

func TestRetriesAreBounded(t *testing.T) {
	e := setup(t)
	e.f.FailNext(10, "POST /repos/acme/widgets/check-runs", fakegithub.ServerError(500))
	_, err := create(e.c, context.Background(), e.inst, repo, "run", e.head, "", "x")
	ge := asGitHubError(t, err)
	if ge.Status != 500 || ge.Reason != github.ReasonTransient {
		t.Fatalf("err = %v", err)
	}
	if n := len(e.f.CallsTo("POST /repos/acme/widgets/check-runs")); n != 4 {
		t.Fatalf("%d attempts, want 4", n)
	}
	for _, w := range e.sleeps.got() {
		if w <= 0 || w > 8*time.Second {
			t.Fatalf("backoff %v out of range", w)
		}
	}
}

func TestLongRateLimitIsReturnedNotSlept(t *testing.T) {
	e := setup(t)
	e.f.FailNext(1, "POST /repos/acme/widgets/check-runs", fakegithub.PrimaryRateLimit(10*time.Minute))
	_, err := create(e.c, context.Background(), e.inst, repo, "run", e.head, "", "x")
	ge := asGitHubError(t, err)
	if ge.Reason != github.ReasonRateLimited || ge.Status != 403 || ge.RetryAfter != 10*time.Minute {
		t.Fatalf("err = %v (RetryAfter %v)", err, ge.RetryAfter)
	}
	if len(e.sleeps.got()) != 0 {
		t.Fatalf("slept %v", e.sleeps.got())
	}
	// A secondary limit without Retry-After means "at least a minute".
	e.f.FailNext(1, "POST /repos/acme/widgets/check-runs", fakegithub.SecondaryRateLimit(0))
	_, err = create(e.c, context.Background(), e.inst, repo, "run", e.head, "", "x")
	if ge := asGitHubError(t, err); ge.Reason != github.ReasonRateLimited || ge.RetryAfter != time.Minute {
		t.Fatalf("err = %v", err)
	}
}

func TestRetryStopsAtContextDeadline(t *testing.T) {
	e := setup(t)
	e.f.FailNext(1, "POST /repos/acme/widgets/check-runs", fakegithub.TooManyRequests(5*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := create(e.c, ctx, e.inst, repo, "run", e.head, "", "x")
	if ge := asGitHubError(t, err); ge.Reason != github.ReasonRateLimited || ge.RetryAfter != 5*time.Second {
		t.Fatalf("err = %v", err)
	}
	if len(e.sleeps.got()) != 0 {
		t.Fatalf("slept %v past the deadline", e.sleeps.got())
	}
}

func TestRealSleepHonoursRetryAfter(t *testing.T) {
	ci.SkipShort(t, "sleeps a second")
	e := setup(t, func(c *github.Config) { c.Sleep = nil })
	e.f.FailNext(1, "POST /repos/acme/widgets/check-runs", fakegithub.TooManyRequests(time.Second))
	start := time.Now()
	e.create(t)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("retried after %v, before Retry-After: 1", d)
	}
}

func TestTokenMintIsRetriedToo(t *testing.T) {
	e := setup(t)
	e.f.FailNext(1, "POST /app/installations/*/access_tokens", fakegithub.ServerError(502))
	e.create(t)
	if n := len(e.f.CallsTo("POST /app/installations/*/access_tokens")); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}
}

func TestConnectionErrorsAreTransient(t *testing.T) {
	var mu sync.Mutex
	fails := 1
	e := setup(t, func(c *github.Config) {
		base := c.HTTP
		c.HTTP = doer(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			fail := fails > 0 && strings.HasSuffix(r.URL.Path, "/check-runs") && r.Method == "POST"
			if fail {
				fails--
			}
			mu.Unlock()
			if fail {
				return nil, errors.New("connection reset")
			}
			return base.Do(r)
		})
	})
	e.create(t)
	if len(e.sleeps.got()) != 1 || len(e.f.CheckRuns(repo)) != 1 {
		t.Fatalf("waits = %v, runs = %d", e.sleeps.got(), len(e.f.CheckRuns(repo)))
	}
}

func TestAnnotationsAreBatched(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	id := e.create(t)
	var as []edge.Annotation
	for i := range 120 {
		as = append(as, edge.Annotation{Path: "src/a.go", StartLine: i + 1, Level: "failure", Message: fmt.Sprintf("finding %d", i)})
	}
	e.f.ResetCalls()
	if err := update(e.c, ctx, e.inst, repo, id, edge.CheckReport{Conclusion: "failure", Summary: "3 findings", Annotations: as}); err != nil {
		t.Fatal(err)
	}
	calls := e.f.CallsTo(fmt.Sprintf("PATCH /repos/acme/widgets/check-runs/%d", id))
	if len(calls) != 3 {
		t.Fatalf("%d PATCHes, want 3", len(calls))
	}
	for i, want := range []int{50, 50, 20} {
		var body struct {
			Status     string
			Conclusion string
			Output     struct{ Annotations []json.RawMessage }
		}
		if err := json.Unmarshal(calls[i].Body, &body); err != nil {
			t.Fatal(err)
		}
		if len(body.Output.Annotations) != want {
			t.Errorf("PATCH %d has %d annotations, want %d", i, len(body.Output.Annotations), want)
		}
		if last := i == 2; (body.Conclusion != "") != last {
			t.Errorf("PATCH %d conclusion %q: only the last request completes the run", i, body.Conclusion)
		}
	}
	cr, _ := e.f.CheckRun(repo, id)
	if len(cr.Annotations) != 120 || cr.Annotations[119].Message != "finding 119" || cr.Annotations[0].EndLine != 1 || cr.Conclusion != "failure" {
		t.Fatalf("stored: %d annotations, conclusion %q", len(cr.Annotations), cr.Conclusion)
	}
}

func TestSummaryIsTruncatedToFit(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	long := strings.Repeat("é", 40000) // 80,000 bytes
	id, err := create(e.c, ctx, e.inst, repo, "run", e.head, "", long)
	if err != nil {
		t.Fatal(err)
	}
	if err := update(e.c, ctx, e.inst, repo, id, edge.CheckReport{Conclusion: "failure", Summary: strings.Repeat("x", 70000)}); err != nil {
		t.Fatal(err)
	}
	cr, _ := e.f.CheckRun(repo, id)
	if len(cr.Summary) > 65535 || !strings.HasSuffix(cr.Summary, "_… summary truncated to fit the check-run limit._") {
		t.Fatalf("summary: %d bytes, ends %q", len(cr.Summary), cr.Summary[len(cr.Summary)-60:])
	}
}

func TestTruncateSummary(t *testing.T) {
	note := "\n\n_… summary truncated to fit the check-run limit._"
	for _, tc := range []struct {
		name string
		in   string
		cut  bool
	}{
		{"short", "hello", false},
		{"exactly at the limit", strings.Repeat("a", 65535), false},
		{"one over", strings.Repeat("a", 65536), true},
		{"multibyte at the cut", strings.Repeat("€", 30000), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := github.TruncateSummary(tc.in)
			if !tc.cut {
				if got != tc.in {
					t.Fatal("changed a summary that fits")
				}
				return
			}
			if len(got) > 65535 || !strings.HasSuffix(got, note) || !utf8.ValidString(got) ||
				!strings.HasPrefix(tc.in, strings.TrimSuffix(got, note)) || len(got) < 65535-3 {
				t.Fatalf("got %d bytes, valid %v", len(got), utf8.ValidString(got))
			}
		})
	}
}

func TestCreateCheckRunRetryDoesNotDuplicate(t *testing.T) {
	// The first create reaches GitHub, but its answer is lost as a 502.
	var mu sync.Mutex
	lost := false
	e := setup(t, func(c *github.Config) {
		base := c.HTTP
		c.HTTP = doer(func(r *http.Request) (*http.Response, error) {
			resp, err := base.Do(r)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && !lost && r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/check-runs") {
				lost = true
				resp.Body.Close()
				return &http.Response{StatusCode: 502, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
			}
			return resp, err
		})
	})
	id, err := create(e.c, context.Background(), e.inst, repo, "flare-dispatch/x", e.head, "", "started")
	if err != nil {
		t.Fatal(err)
	}
	runs := e.f.CheckRuns(repo)
	if len(runs) != 1 || runs[0].ID != id || !strings.HasPrefix(runs[0].ExternalID, "flare-dispatch-") {
		t.Fatalf("runs = %+v (id %d)", runs, id)
	}
	if n := len(e.f.CallsTo("POST /repos/acme/widgets/check-runs")); n != 1 {
		t.Fatalf("%d creates, want 1", n)
	}
}

func TestFailedCreatesThatWereNotAppliedAreRetried(t *testing.T) {
	// Two 502s that GitHub did not apply: the lookups find nothing, the third create lands.
	e := setup(t)
	e.f.FailNext(2, "POST /repos/acme/widgets/check-runs", fakegithub.ServerError(502))
	id := e.create(t)
	if runs := e.f.CheckRuns(repo); len(runs) != 1 || runs[0].ID != id || len(e.sleeps.got()) != 2 {
		t.Fatalf("runs %+v after %d sleeps", runs, len(e.sleeps.got()))
	}
}

func baseFiles() map[string]string {
	return map[string]string{
		"README.md":              "# widgets\n",
		"fixtures/a.json":        `{"v":1}`,
		"fixtures/old.json":      "stale",
		"src/keep/deep/file.txt": "untouched",
	}
}

func writebackEnv(t *testing.T) *env {
	t.Helper()
	return newEnv(t, fakegithub.RepoOptions{Files: baseFiles()})
}

func refreshSpec(content string) edge.PullRequestSpec {
	return edge.PullRequestSpec{
		Branch:        "flare-dispatch/refresh-fixtures",
		CommitMessage: "chore: refresh fixtures\n\nGenerated by flare-dispatch refresh-fixtures.",
		Files: []edge.PRFile{
			{Path: "fixtures/a.json", Content: []byte(content)},
			{Path: "fixtures/new/b.bin", Content: []byte{0, 1, 2, 0xff}},
			{Path: "fixtures/old.json", Delete: true},
			{Path: "fixtures/never-existed.json", Delete: true},
		},
		PR: &edge.PROptions{Title: "chore: refresh fixtures", Body: "first", Draft: true},
	}
}

func TestWritebackOpensDraftPRWithExactlyTheFiles(t *testing.T) {
	e := writebackEnv(t)
	spec := refreshSpec(`{"v":2}`)
	spec.Files = append(spec.Files, edge.PRFile{Path: "run.sh", Content: []byte("#!/bin/sh\n"), Executable: true})
	res, err := e.c.OpenPullRequest(context.Background(), e.inst, repo, spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != "" || !res.BranchCreated || !res.Created || res.Number != 1 || res.Base != "main" ||
		res.Files != 3 || res.Deletions != 1 || res.URL != "https://github.com/acme/widgets/pull/1" {
		t.Fatalf("result = %+v", res)
	}
	want := map[string]string{
		"README.md":              "# widgets\n",
		"fixtures/a.json":        `{"v":2}`,
		"fixtures/new/b.bin":     "\x00\x01\x02\xff",
		"run.sh":                 "#!/bin/sh\n",
		"src/keep/deep/file.txt": "untouched",
	}
	if got := e.f.Files(repo, "flare-dispatch/refresh-fixtures"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("branch files = %q\nwant %q", got, want)
	}
	if got := e.f.Files(repo, "main"); fmt.Sprint(got) != fmt.Sprint(baseFiles()) {
		t.Fatalf("main changed: %q", got)
	}
	commit, ok := e.f.CommitOf(repo, res.Commit)
	if !ok || len(commit.Parents) != 1 || commit.Parents[0] != e.head || !strings.HasPrefix(commit.Message, "chore: refresh fixtures") {
		t.Fatalf("commit = %+v", commit)
	}
	prs := e.f.PullRequests(repo)
	if len(prs) != 1 || !prs[0].Draft || prs[0].Head != "flare-dispatch/refresh-fixtures" || prs[0].Base != "main" ||
		prs[0].Title != "chore: refresh fixtures" || prs[0].Body != "first" || prs[0].State != "open" {
		t.Fatalf("pulls = %+v", prs)
	}
	// The contract's order of calls (§7 step 5).
	var seq []string
	for _, c := range e.f.CallsTo("/repos/**") {
		seq = append(seq, c.Method+" "+strings.TrimPrefix(c.Path, "/repos/acme/widgets"))
	}
	kinds := strings.Join(seq, "\n")
	for _, step := range []string{"GET \n", "GET /git/ref/heads/main", "GET /git/commits/", "POST /git/blobs", "POST /git/trees",
		"POST /git/commits", "POST /git/refs", "GET /pulls", "POST /pulls"} {
		i := strings.Index(kinds, step)
		if i < 0 {
			t.Fatalf("no %q in\n%s", step, strings.Join(seq, "\n"))
		}
		kinds = kinds[i:]
	}
	trees := e.f.CallsTo("POST /repos/acme/widgets/git/trees")
	if len(trees) != 1 {
		t.Fatalf("%d tree requests", len(trees))
	}
	var tree struct {
		Tree []struct {
			Path, Mode, Type string
			SHA              *string
		}
	}
	if err := json.Unmarshal(trees[0].Body, &tree); err != nil {
		t.Fatal(err)
	}
	modes := map[string]string{}
	for _, en := range tree.Tree {
		if strings.Contains(en.Path, "never-existed") {
			t.Fatalf("deletion of an absent path sent: %s", trees[0].Body)
		}
		if en.Path == "fixtures/old.json" && en.SHA != nil {
			t.Fatalf("deletion without sha:null: %s", trees[0].Body)
		}
		modes[en.Path] = en.Mode
	}
	if modes["run.sh"] != "100755" || modes["fixtures/a.json"] != "100644" {
		t.Fatalf("modes = %v", modes)
	}
}

func TestWritebackRerunForceUpdatesBranchAndSamePR(t *testing.T) {
	e := writebackEnv(t)
	ctx := context.Background()
	first, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec(`{"v":2}`))
	if err != nil {
		t.Fatal(err)
	}
	e.f.Advance(time.Hour)
	spec := refreshSpec(`{"v":3}`)
	spec.Files = spec.Files[:1] // this run only rewrites a.json
	spec.PR.Body = "second"
	second, err := e.c.OpenPullRequest(ctx, e.inst, repo, spec)
	if err != nil {
		t.Fatal(err)
	}
	if second.BranchCreated || second.Created || second.Number != first.Number || second.Commit == first.Commit {
		t.Fatalf("second = %+v, first = %+v", second, first)
	}
	want := map[string]string{"README.md": "# widgets\n", "fixtures/a.json": `{"v":3}`, "fixtures/old.json": "stale",
		"src/keep/deep/file.txt": "untouched"}
	if got := e.f.Files(repo, "flare-dispatch/refresh-fixtures"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("branch files = %q", got)
	}
	prs := e.f.PullRequests(repo)
	if len(prs) != 1 || prs[0].Body != "second" {
		t.Fatalf("pulls = %+v", prs)
	}
	patch := e.f.CallsTo("PATCH /repos/acme/widgets/git/refs/heads/flare-dispatch/refresh-fixtures")
	if len(patch) != 1 || !strings.Contains(string(patch[0].Body), `"force":true`) {
		t.Fatalf("ref updates = %+v", patch)
	}
}

func TestWritebackVariants(t *testing.T) {
	ctx := context.Background()
	t.Run("keep existing branch", func(t *testing.T) {
		e := writebackEnv(t)
		if _, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec("1")); err != nil {
			t.Fatal(err)
		}
		spec := refreshSpec("2")
		spec.KeepExisting = true
		res, err := e.c.OpenPullRequest(ctx, e.inst, repo, spec)
		if err != nil || res.Skipped != "branch flare-dispatch/refresh-fixtures exists" {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
		if e.f.Files(repo, spec.Branch)["fixtures/a.json"] != "1" {
			t.Fatal("kept branch was changed")
		}
	})
	t.Run("no changes", func(t *testing.T) {
		e := writebackEnv(t)
		res, err := e.c.OpenPullRequest(ctx, e.inst, repo, edge.PullRequestSpec{Branch: "b", CommitMessage: "m",
			Files: []edge.PRFile{{Path: "fixtures/a.json", Content: []byte(`{"v":1}`)}}, PR: &edge.PROptions{Title: "t"}})
		if err != nil || res.Skipped != "no changes against main" || len(e.f.PullRequests(repo)) != 0 || e.f.HeadSHA(repo, "b") != "" {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
	})
	t.Run("no files", func(t *testing.T) {
		e := writebackEnv(t)
		res, err := e.c.OpenPullRequest(ctx, e.inst, repo, edge.PullRequestSpec{Branch: "b", Base: "main"})
		if err != nil || res.Skipped != "no files" {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
	})
	t.Run("branch only", func(t *testing.T) {
		e := writebackEnv(t)
		spec := refreshSpec("x")
		spec.PR = nil
		res, err := e.c.OpenPullRequest(ctx, e.inst, repo, spec)
		if err != nil || res.Number != 0 || !res.BranchCreated || len(e.f.PullRequests(repo)) != 0 {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
	})
	t.Run("explicit base", func(t *testing.T) {
		e := writebackEnv(t)
		e.f.PushFiles(repo, "release", "release branch", map[string]string{"VERSION": "2"})
		spec := refreshSpec("x")
		spec.Base = "release"
		res, err := e.c.OpenPullRequest(ctx, e.inst, repo, spec)
		if err != nil || res.Base != "release" || e.f.PullRequests(repo)[0].Base != "release" ||
			e.f.Files(repo, spec.Branch)["VERSION"] != "2" {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
		if len(e.f.CallsTo("GET /repos/acme/widgets")) != 0 {
			t.Fatal("looked up the default branch although a base was given")
		}
	})
	t.Run("branch is the base", func(t *testing.T) {
		e := writebackEnv(t)
		spec := refreshSpec("x")
		spec.Branch = "main"
		if _, err := e.c.OpenPullRequest(ctx, e.inst, repo, spec); err == nil {
			t.Fatal("writeback onto the base branch accepted")
		}
		if e.f.HeadSHA(repo, "main") != e.head {
			t.Fatal("main moved")
		}
	})
	t.Run("contents read-only", func(t *testing.T) {
		e := writebackEnv(t)
		e.f.SetPermissions(e.inst, map[string]string{"contents": "read", "metadata": "read", "pull_requests": "write"})
		_, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec("x"))
		if ge := asGitHubError(t, err); ge.Status != 403 || ge.Reason != github.ReasonOther {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("closed PR gets a new one", func(t *testing.T) {
		e := writebackEnv(t)
		first, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec("1"))
		if err != nil {
			t.Fatal(err)
		}
		closePR(t, e, first.Number)
		second, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec("2"))
		if err != nil || !second.Created || second.Number == first.Number {
			t.Fatalf("second = %+v, err = %v", second, err)
		}
	})
	t.Run("create refused as existing falls back to update", func(t *testing.T) {
		e := writebackEnv(t)
		first, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec("1"))
		if err != nil {
			t.Fatal(err)
		}
		// The first PR listing comes back empty (a lagging replica), so the client
		// tries to create; GitHub's 422 "already exists" must turn into an update.
		var mu sync.Mutex
		lagged := false
		cfg := e.config()
		cfg.HTTP = doer(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			lag := !lagged && r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/pulls")
			lagged = lagged || lag
			mu.Unlock()
			if lag {
				return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
					Body: io.NopCloser(strings.NewReader("[]")), Request: r}, nil
			}
			return e.f.HTTPClient().Do(r)
		})
		c, err := github.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.OpenPullRequest(ctx, e.inst, repo, refreshSpec("2"))
		if err != nil || res.Number != first.Number || res.Created || len(e.f.PullRequests(repo)) != 1 {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
		if c := e.f.CallsTo("POST /repos/acme/widgets/pulls"); len(c) != 2 || c[1].Status != 422 {
			t.Fatalf("creates = %+v", c)
		}
	})
}

// closePR closes a pull request through the API, as a user would.
func closePR(t *testing.T, e *env, number int) {
	t.Helper()
	tok, _, err := e.c.RepoToken(context.Background(), repo, e.inst)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PATCH", fmt.Sprintf("%srepos/%s/pulls/%d", e.f.URL(), repo, number), strings.NewReader(`{"state":"closed"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("User-Agent", "test")
	resp, err := e.f.HTTPClient().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("close: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestReads(t *testing.T) {
	e := writebackEnv(t)
	ctx := context.Background()
	out, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec("1"))
	if err != nil {
		t.Fatal(err)
	}
	prs, err := e.c.OpenPullRequests(ctx, 0, repo)
	if err != nil || len(prs) != 1 || prs[0].Number != out.Number || prs[0].Head != "flare-dispatch/refresh-fixtures" ||
		prs[0].Base != "main" || !prs[0].Draft || prs[0].HeadSHA != out.Commit || prs[0].URL != out.URL {
		t.Fatalf("open pull requests %+v %v", prs, err)
	}
	info, err := e.c.Repository(ctx, 0, repo)
	if err != nil || info.FullName != repo || info.DefaultBranch != "main" || !info.Private {
		t.Fatalf("repository %+v %v", info, err)
	}
	_, err = e.c.Repository(ctx, e.inst, "acme/nope")
	if ge := asGitHubError(t, err); ge.Status != 404 && ge.Status != 403 || ge.Reason != github.ReasonOther {
		t.Fatalf("a repository outside the installation: %v", err)
	}
}

func TestOpenPullRequestsFollowsPages(t *testing.T) {
	// 150 open pull requests: two pages of 100; without following Link's next the
	// list stops at 100.
	e := writebackEnv(t)
	tok, _, err := e.c.RepoToken(context.Background(), repo, e.inst)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		branch := fmt.Sprintf("b%03d", i)
		e.f.PushFiles(repo, branch, "change", map[string]string{"n.txt": branch})
		body := fmt.Sprintf(`{"title":"t%d","head":%q,"base":"main"}`, i, branch)
		req, _ := http.NewRequest("POST", e.f.URL()+"repos/"+repo+"/pulls", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := e.f.HTTPClient().Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("create pull %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
	prs, err := e.c.OpenPullRequests(context.Background(), e.inst, repo)
	if err != nil || len(prs) != 150 {
		t.Fatalf("%d pull requests, %v; want 150", len(prs), err)
	}
	seen := map[int]bool{}
	for _, p := range prs {
		seen[p.Number] = true
	}
	if len(seen) != 150 {
		t.Fatalf("%d distinct pull requests", len(seen))
	}
}
