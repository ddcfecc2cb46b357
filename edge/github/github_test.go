package github_test

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

type env struct {
	f      *fakegithub.Fake
	app    fakegithub.App
	inst   int64
	c      *github.Client
	sleeps *sleeper
	head   string // head of main
}

func setup(t *testing.T, mod ...func(*github.Config)) *env {
	t.Helper()
	f, app := fakegithub.New(t)
	f.SetNow(t0)
	e := &env{f: f, app: app, sleeps: &sleeper{}}
	e.inst = f.AddInstallation(repo)
	e.head = f.HeadSHA(repo, "main")
	cfg := github.Config{
		AppID: app.ID, PrivateKeyPEM: app.PrivateKeyPEM, HTTPClient: f.HTTPClient(),
		BaseURL: f.URL(), Now: f.Now, Sleep: e.sleeps.sleep,
	}
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

func asAPIError(t *testing.T, err error) *github.APIError {
	t.Helper()
	var ae *github.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *APIError", err, err)
	}
	return ae
}

func TestNewRequiresHTTPClient(t *testing.T) {
	_, app := fakegithub.New(t)
	if _, err := github.New(github.Config{AppID: app.ID, PrivateKeyPEM: app.PrivateKeyPEM}); err == nil {
		t.Fatal("New without an *http.Client succeeded")
	}
	if _, err := github.New(github.Config{AppID: app.ID, PrivateKeyPEM: []byte("not pem"), HTTPClient: &http.Client{}}); err == nil {
		t.Fatal("New with a bad key succeeded")
	}
}

func TestCheckRunLifecycle(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	id, err := e.c.CreateCheckRun(ctx, e.inst, repo, "flare-dispatch/offload-test", e.head,
		"https://example.com/logs/x", "Execution `x` started.")
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
	if err := e.c.UpdateCheckRun(ctx, e.inst, repo, id, github.CheckRunUpdate{Title: "Queued", Summary: queued}); err != nil {
		t.Fatal(err)
	}
	cr, _ = e.f.CheckRun(repo, id)
	if cr.Status != "in_progress" || cr.Summary != queued || cr.Title != "Queued" {
		t.Fatalf("queued run = %+v", cr)
	}

	e.f.Advance(time.Minute)
	if err := e.c.UpdateCheckRun(ctx, e.inst, repo, id, github.CheckRunUpdate{
		Conclusion: github.ConclusionSuccess, Summary: "✓ offload-test — execution succeeded.",
	}); err != nil {
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
	for _, c := range []github.Conclusion{github.ConclusionSuccess, github.ConclusionFailure, github.ConclusionNeutral,
		github.ConclusionCancelled, github.ConclusionTimedOut} {
		id, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "started")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.c.UpdateCheckRun(context.Background(), e.inst, repo, id, github.CheckRunUpdate{Conclusion: c, Summary: "done"}); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if cr, _ := e.f.CheckRun(repo, id); cr.Conclusion != string(c) {
			t.Fatalf("conclusion = %q, want %q", cr.Conclusion, c)
		}
	}
	err := e.c.UpdateCheckRun(context.Background(), e.inst, repo, 1, github.CheckRunUpdate{Conclusion: "stale"})
	if err == nil || errors.As(err, new(*github.APIError)) {
		t.Fatalf("conclusion stale: err = %v, want a local error", err)
	}
}

func TestCompletedRunCannotGoBackInProgress(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	id, _ := e.c.CreateCheckRun(ctx, e.inst, repo, "run", e.head, "", "started")
	if err := e.c.UpdateCheckRun(ctx, e.inst, repo, id, github.CheckRunUpdate{Conclusion: github.ConclusionFailure, Summary: "x"}); err != nil {
		t.Fatal(err)
	}
	err := e.c.UpdateCheckRun(ctx, e.inst, repo, id, github.CheckRunUpdate{Summary: "queued again"})
	if ae := asAPIError(t, err); ae.Status != 422 || ae.Reason != github.ReasonOther {
		t.Fatalf("err = %v", err)
	}
}

func TestNoRetryOn422(t *testing.T) {
	e := setup(t)
	_, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", strings.Repeat("f", 40), "", "x")
	ae := asAPIError(t, err)
	if ae.Status != 422 || ae.Reason != github.ReasonOther || !strings.Contains(ae.Message, "No commit found") {
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
	id, err := e.c.CreateCheckRun(context.Background(), other, "acme/other", "run", e.f.HeadSHA("acme/other", "main"), "", "x")
	if err != nil {
		t.Fatal(err)
	}
	err = e.c.UpdateCheckRun(context.Background(), e.inst, repo, id, github.CheckRunUpdate{Summary: "y"})
	if ae := asAPIError(t, err); ae.Status != 404 {
		t.Fatalf("err = %v", err)
	}
}

func TestInstallationTokenCachedUntilAMinuteBeforeExpiry(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	create := func() {
		t.Helper()
		if _, err := e.c.CreateCheckRun(ctx, e.inst, repo, "run", e.head, "", "x"); err != nil {
			t.Fatal(err)
		}
	}
	mints := func() int { return len(e.f.CallsTo(fmt.Sprintf("POST /app/installations/%d/access_tokens", e.inst))) }
	create()
	create()
	if mints() != 1 {
		t.Fatalf("%d token requests for two calls, want 1", mints())
	}
	e.f.Advance(58*time.Minute + 30*time.Second) // 90 s left: still used
	create()
	if mints() != 1 {
		t.Fatalf("token re-minted with 90 s left")
	}
	e.f.Advance(time.Minute) // 30 s left: refreshed
	create()
	if mints() != 2 {
		t.Fatalf("%d token requests after the token got within 60 s of expiry, want 2", mints())
	}
	tok, exp, err := e.c.InstallationToken(ctx, e.inst)
	if err != nil || !strings.HasPrefix(tok, "ghs_") || !exp.Equal(e.f.Now().Add(time.Hour)) {
		t.Fatalf("InstallationToken = %q, %v, %v", tok, exp, err)
	}
}

// kvCache stands in for a KV-backed cache: the client must use what it holds.
type kvCache struct {
	mu   sync.Mutex
	puts int
	m    map[int64]string
	exp  map[int64]time.Time
}

func (k *kvCache) Get(_ context.Context, id int64) (string, time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	tok, ok := k.m[id]
	return tok, k.exp[id], ok
}

func (k *kvCache) Put(_ context.Context, id int64, tok string, exp time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.puts++
	k.m[id], k.exp[id] = tok, exp
	return nil
}

func TestTokenCacheIsPluggable(t *testing.T) {
	cache := &kvCache{m: map[int64]string{}, exp: map[int64]time.Time{}}
	e := setup(t, func(c *github.Config) { c.Tokens = cache })
	if _, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	if cache.puts != 1 || !strings.HasPrefix(cache.m[e.inst], "ghs_") {
		t.Fatalf("cache = %+v", cache)
	}
	// A second client sharing the cache (another isolate) mints nothing.
	c2, _ := github.New(github.Config{AppID: e.app.ID, PrivateKeyPEM: e.app.PrivateKeyPEM, HTTPClient: e.f.HTTPClient(),
		BaseURL: e.f.URL(), Now: e.f.Now, Tokens: cache})
	if _, err := c2.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.f.CallsTo("POST /app/installations/*/access_tokens")); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

func TestRevokedTokenIsReplacedOnce(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	if _, err := e.c.CreateCheckRun(ctx, e.inst, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	e.f.RevokeTokens(e.inst)
	if _, err := e.c.CreateCheckRun(ctx, e.inst, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range e.f.Calls() {
		got = append(got, fmt.Sprintf("%s %s %d", c.Method, c.Path, c.Status))
	}
	want := []string{
		"POST /app/installations/1001/access_tokens 201",
		"POST /repos/acme/widgets/check-runs 201",
		"POST /repos/acme/widgets/check-runs 401",
		"POST /app/installations/1001/access_tokens 201",
		"POST /repos/acme/widgets/check-runs 201",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A token refused even when fresh is reported, not looped on.
	e.f.FailNext(5, "POST /repos/acme/widgets/check-runs", fakegithub.BadCredentials())
	_, err := e.c.CreateCheckRun(ctx, e.inst, repo, "run", e.head, "", "x")
	if ae := asAPIError(t, err); ae.Reason != github.ReasonUnauthorized || ae.Status != 401 {
		t.Fatalf("err = %v", err)
	}
	if n := len(e.f.CallsTo("POST /repos/acme/widgets/check-runs")); n != 5 {
		t.Fatalf("%d check-run POSTs, want 5 (2 earlier + refused, refreshed, refused)", n)
	}
}

func TestConcurrentCallsShareOneTokenRequest(t *testing.T) {
	e := setup(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x")
			errs <- err
		}()
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
			var f *fakegithub.Fake
			e := setup(t, func(c *github.Config) {}) // for the fake
			f = e.f
			cfg := github.Config{AppID: e.app.ID, PrivateKeyPEM: e.app.PrivateKeyPEM, HTTPClient: f.HTTPClient(),
				BaseURL: f.URL(), Now: f.Now, Sleep: e.sleeps.sleep}
			mod(&cfg, f)
			c, err := github.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x")
			ae := asAPIError(t, err)
			if ae.Status != 401 || ae.Reason != github.ReasonUnauthorized {
				t.Fatalf("err = %v", err)
			}
			if n := len(f.Calls()); n != 1 {
				t.Fatalf("%d calls, want 1 (no retry of a refused JWT)", n)
			}
			if len(f.CallsTo("/repos/**")) != 0 {
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
			if _, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestJWTClaims(t *testing.T) {
	e := setup(t)
	if _, _, err := e.c.InstallationToken(context.Background(), e.inst); err != nil {
		t.Fatal(err)
	}
	// The fake accepted it; check the claims the contract fixes, too.
	var jwt string
	rt := roundTripper(func(r *http.Request) (*http.Response, error) {
		jwt = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		return e.f.HTTPClient().Transport.RoundTrip(r)
	})
	c, _ := github.New(github.Config{AppID: e.app.ID, PrivateKeyPEM: e.app.PrivateKeyPEM,
		HTTPClient: &http.Client{Transport: rt}, BaseURL: e.f.URL(), Now: e.f.Now})
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
	// inst 0 resolves from the repository.
	if _, err := e.c.CreateCheckRun(ctx, 0, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	if c := e.f.CallsTo("GET /repos/acme/widgets/installation"); len(c) != 2 || c[0].App != e.app.ID {
		t.Fatalf("installation lookups = %+v", c)
	}
	e.f.AddRepo("acme/elsewhere", fakegithub.RepoOptions{})
	_, err = e.c.InstallationForRepo(ctx, "acme/elsewhere")
	if ae := asAPIError(t, err); ae.Status != 404 || ae.Reason != github.ReasonOther {
		t.Fatalf("err = %v", err)
	}
	if _, err := e.c.InstallationForRepo(ctx, "not-a-repo"); err == nil {
		t.Fatal("bad repo name accepted")
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
			id, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x")
			if err != nil {
				t.Fatal(err)
			}
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
}

func TestRetriesAreBounded(t *testing.T) {
	e := setup(t)
	e.f.FailNext(10, "POST /repos/acme/widgets/check-runs", fakegithub.ServerError(500))
	_, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x")
	ae := asAPIError(t, err)
	if ae.Status != 500 || ae.Reason != github.ReasonTransient {
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
	_, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x")
	ae := asAPIError(t, err)
	if ae.Reason != github.ReasonRateLimited || ae.Status != 403 || ae.RetryAfter != 10*time.Minute {
		t.Fatalf("err = %v (RetryAfter %v)", err, ae.RetryAfter)
	}
	if len(e.sleeps.got()) != 0 {
		t.Fatalf("slept %v", e.sleeps.got())
	}
	// A secondary limit without Retry-After means "at least a minute".
	e.f.FailNext(1, "POST /repos/acme/widgets/check-runs", fakegithub.SecondaryRateLimit(0))
	_, err = e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x")
	if ae := asAPIError(t, err); ae.Reason != github.ReasonRateLimited || ae.RetryAfter != time.Minute {
		t.Fatalf("err = %v", err)
	}
}

func TestRetryStopsAtContextDeadline(t *testing.T) {
	e := setup(t)
	e.f.FailNext(1, "POST /repos/acme/widgets/check-runs", fakegithub.TooManyRequests(5*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := e.c.CreateCheckRun(ctx, e.inst, repo, "run", e.head, "", "x")
	if ae := asAPIError(t, err); ae.Reason != github.ReasonRateLimited || ae.RetryAfter != 5*time.Second {
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
	if _, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("retried after %v, before Retry-After: 1", d)
	}
}

func TestTokenMintIsRetriedToo(t *testing.T) {
	e := setup(t)
	e.f.FailNext(1, "POST /app/installations/*/access_tokens", fakegithub.ServerError(502))
	if _, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.f.CallsTo("POST /app/installations/*/access_tokens")); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConnectionErrorsAreTransient(t *testing.T) {
	var mu sync.Mutex
	fails := 1
	var e *env
	e = setup(t, func(c *github.Config) {
		base := c.HTTPClient.Transport
		c.HTTPClient = &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			fail := fails > 0 && strings.Contains(r.URL.Path, "check-runs")
			if fail {
				fails--
			}
			mu.Unlock()
			if fail {
				return nil, errors.New("connection reset")
			}
			return base.RoundTrip(r)
		})}
	})
	if _, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "run", e.head, "", "x"); err != nil {
		t.Fatal(err)
	}
	if len(e.sleeps.got()) != 1 {
		t.Fatalf("waits = %v", e.sleeps.got())
	}
}

func TestAnnotationsAreBatched(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	id, _ := e.c.CreateCheckRun(ctx, e.inst, repo, "run", e.head, "", "x")
	var as []github.Annotation
	for i := range 120 {
		as = append(as, github.Annotation{Path: "src/a.go", StartLine: i + 1, Level: "failure", Message: fmt.Sprintf("finding %d", i)})
	}
	e.f.ResetCalls()
	err := e.c.UpdateCheckRun(ctx, e.inst, repo, id, github.CheckRunUpdate{Conclusion: github.ConclusionFailure, Summary: "3 findings", Annotations: as})
	if err != nil {
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
	id, err := e.c.CreateCheckRun(ctx, e.inst, repo, "run", e.head, "", long)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.UpdateCheckRun(ctx, e.inst, repo, id, github.CheckRunUpdate{Conclusion: github.ConclusionFailure, Summary: strings.Repeat("x", 70000)}); err != nil {
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
	f, app := fakegithub.New(t)
	f.SetNow(t0)
	f.AddRepo(repo, fakegithub.RepoOptions{Files: baseFiles()})
	e := &env{f: f, app: app, sleeps: &sleeper{}}
	e.inst = f.AddInstallation(repo)
	e.head = f.HeadSHA(repo, "main")
	c, err := github.New(github.Config{AppID: app.ID, PrivateKeyPEM: app.PrivateKeyPEM, HTTPClient: f.HTTPClient(),
		BaseURL: f.URL(), Now: f.Now, Sleep: e.sleeps.sleep})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

func refreshSpec(content string) github.PRSpec {
	return github.PRSpec{
		Branch:        "flare-dispatch/refresh-fixtures",
		CommitMessage: "chore: refresh fixtures\n\nGenerated by flare-dispatch refresh-fixtures.",
		Files: []github.FileChange{
			{Path: "fixtures/a.json", Content: []byte(content)},
			{Path: "fixtures/new/b.bin", Content: []byte{0, 1, 2, 0xff}},
			{Path: "fixtures/old.json", Delete: true},
			{Path: "fixtures/never-existed.json", Delete: true},
		},
		PR: &github.PROptions{Title: "chore: refresh fixtures", Body: "first", Draft: true},
	}
}

func TestWritebackOpensDraftPRWithExactlyTheFiles(t *testing.T) {
	e := writebackEnv(t)
	res, err := e.c.OpenPullRequest(context.Background(), e.inst, repo, refreshSpec(`{"v":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != "" || !res.BranchCreated || !res.Created || res.Number != 1 || res.Base != "main" ||
		res.Files != 2 || res.Deletions != 1 || res.URL != "https://github.com/acme/widgets/pull/1" {
		t.Fatalf("result = %+v", res)
	}
	want := map[string]string{
		"README.md":              "# widgets\n",
		"fixtures/a.json":        `{"v":2}`,
		"fixtures/new/b.bin":     "\x00\x01\x02\xff",
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
			t.Fatalf("no %q in\n%s", step, kinds)
		}
		kinds = kinds[i:]
	}
	for _, c := range e.f.CallsTo("POST /repos/acme/widgets/git/trees") {
		if !strings.Contains(string(c.Body), `{"sha":null,"path":"fixtures/old.json","mode":"100644","type":"blob"}`) {
			t.Fatalf("tree request without a sha:null deletion: %s", c.Body)
		}
		if strings.Contains(string(c.Body), "never-existed") {
			t.Fatalf("deletion of an absent path sent: %s", c.Body)
		}
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
	if c := e.f.CallsTo("POST /repos/acme/widgets/git/refs"); len(c) != 2 || c[1].Status != 422 {
		t.Fatalf("ref creates = %+v", c)
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
		if err != nil || !strings.Contains(res.Skipped, "exists") {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
		if e.f.Files(repo, spec.Branch)["fixtures/a.json"] != "1" {
			t.Fatal("kept branch was changed")
		}
	})
	t.Run("no changes", func(t *testing.T) {
		e := writebackEnv(t)
		res, err := e.c.OpenPullRequest(ctx, e.inst, repo, github.PRSpec{Branch: "b", CommitMessage: "m",
			Files: []github.FileChange{{Path: "fixtures/a.json", Content: []byte(`{"v":1}`)}}, PR: &github.PROptions{Title: "t"}})
		if err != nil || res.Skipped == "" || len(e.f.PullRequests(repo)) != 0 || e.f.HeadSHA(repo, "b") != "" {
			t.Fatalf("res = %+v, err = %v", res, err)
		}
	})
	t.Run("no files", func(t *testing.T) {
		e := writebackEnv(t)
		res, err := e.c.OpenPullRequest(ctx, e.inst, repo, github.PRSpec{Branch: "b", Base: "main"})
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
		if ae := asAPIError(t, err); ae.Status != 403 || ae.Reason != github.ReasonOther {
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
		// The first PR listing comes back empty (a lagging replica), so the
		// client tries to create; GitHub's 422 "already exists" must turn
		// into an update of the open PR.
		var mu sync.Mutex
		lagged := false
		base := e.f.HTTPClient().Transport
		c, _ := github.New(github.Config{AppID: e.app.ID, PrivateKeyPEM: e.app.PrivateKeyPEM, BaseURL: e.f.URL(), Now: e.f.Now,
			HTTPClient: &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				lag := !lagged && r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/pulls")
				lagged = lagged || lag
				mu.Unlock()
				if lag {
					return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
						Body: io.NopCloser(strings.NewReader("[]")), Request: r}, nil
				}
				return base.RoundTrip(r)
			})}})
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
	tok, _, err := e.c.InstallationToken(context.Background(), e.inst)
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

func TestCreateReview(t *testing.T) {
	e := writebackEnv(t)
	ctx := context.Background()
	res, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec("1"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.c.CreateReview(ctx, e.inst, repo, res.Number, "### Review\n\nLooks fine.")
	if err != nil {
		t.Fatal(err)
	}
	rv := e.f.Reviews(repo, res.Number)
	if len(rv) != 1 || rv[0].ID != id || rv[0].State != "COMMENTED" || rv[0].Body != "### Review\n\nLooks fine." ||
		rv[0].CommitID != res.Commit {
		t.Fatalf("reviews = %+v", rv)
	}
	_, err = e.c.CreateReview(ctx, e.inst, repo, 99, "x")
	if ae := asAPIError(t, err); ae.Status != 404 {
		t.Fatalf("err = %v", err)
	}
}

func TestCreateCheckRunRetryDoesNotDuplicate(t *testing.T) {
	// The first create reaches GitHub, but its answer is lost as a 502.
	var mu sync.Mutex
	lost := false
	e := setup(t, func(c *github.Config) {
		base := c.HTTPClient.Transport
		c.HTTPClient = &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			resp, err := base.RoundTrip(r)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && !lost && r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/check-runs") {
				lost = true
				resp.Body.Close()
				return &http.Response{StatusCode: 502, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
			}
			return resp, err
		})}
	})
	id, err := e.c.CreateCheckRun(context.Background(), e.inst, repo, "flare-dispatch/x", e.head, "", "started")
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
