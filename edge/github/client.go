// Package github is the GitHub App client the edge uses: App JWTs, installation
// tokens, check-runs, reviews and the Git Data API sequence that pushes a
// writeback branch and opens (or updates) a draft pull request.
//
// It is built on go-github, but owns authentication and retries itself so that
// it can run inside a Cloudflare Worker (GOOS=js GOARCH=wasm): the caller hands
// in the *http.Client (a fetch-backed one on Workers), the JWT is signed with
// crypto/rsa, and installation tokens are kept behind TokenCache so the
// Cloudflare build can store them in KV.
//
// Every method that takes an installation id accepts 0 to mean "look the
// installation up from the repository" (GET /repos/{o}/{r}/installation with
// the App JWT). Repositories are named "owner/name".
//
// Failed calls return *APIError (matched with errors.As) unless the context
// ended first, in which case the context's error is returned wrapped.
package github

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v62/github"
)

// DefaultBaseURL is the public GitHub REST API.
const DefaultBaseURL = "https://api.github.com/"

// Config is everything New needs. AppID, PrivateKeyPEM and HTTPClient are
// required; the rest have defaults.
type Config struct {
	// AppID is the GitHub App's numeric id (GITHUB_APP_ID); it is the JWT's iss.
	AppID int64
	// PrivateKeyPEM is the App's private key (GITHUB_APP_PRIVATE_KEY), PKCS#8
	// or PKCS#1 PEM. A key whose newlines arrived as literal `\n` is accepted.
	PrivateKeyPEM []byte
	// HTTPClient sends every request. It is required: the client never falls
	// back to http.DefaultClient, which does not exist in a Worker.
	HTTPClient *http.Client
	// BaseURL is the REST API root, default DefaultBaseURL. A missing trailing
	// slash is added.
	BaseURL string
	// Tokens caches installation tokens; default an in-memory cache.
	Tokens TokenCache
	// Now is the clock for JWT claims and token expiry; default time.Now.
	Now func() time.Time
	// Sleep waits between retries; default a timer that honours ctx.
	Sleep func(ctx context.Context, d time.Duration) error
	// MaxAttempts bounds the tries per request (first try included); default 4.
	MaxAttempts int
	// MaxWait is the longest single wait the client sleeps before a retry,
	// default 30s. A rate limit that resets later is returned at once as an
	// *APIError with RetryAfter set, so the caller can reschedule instead.
	MaxWait time.Duration
	// UserAgent is sent on every request; default "flare-dispatch".
	UserAgent string
	// Logger receives retry and cache warnings; default discards. Tokens and
	// keys are never logged.
	Logger *slog.Logger
}

// Client is a GitHub App client. It is safe for concurrent use.
type Client struct {
	appID       int64
	signer      *jwtSigner
	hc          *http.Client
	base        *url.URL
	tokens      TokenCache
	now         func() time.Time
	sleep       func(ctx context.Context, d time.Duration) error
	maxAttempts int
	maxWait     time.Duration
	userAgent   string
	log         *slog.Logger

	mintMu  sync.Mutex
	minting map[int64]*mintCall // installation id → token request in flight
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.AppID <= 0 {
		return nil, fmt.Errorf("github: app id must be > 0, got %d", cfg.AppID)
	}
	if cfg.HTTPClient == nil {
		return nil, errors.New("github: an *http.Client is required")
	}
	signer, err := newJWTSigner(cfg.PrivateKeyPEM)
	if err != nil {
		return nil, err
	}
	raw := cfg.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	if !strings.HasSuffix(raw, "/") {
		raw += "/"
	}
	base, err := url.Parse(raw)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("github: base url %q is not an absolute URL", cfg.BaseURL)
	}
	c := &Client{
		appID:       cfg.AppID,
		signer:      signer,
		hc:          cfg.HTTPClient,
		base:        base,
		tokens:      cfg.Tokens,
		now:         cfg.Now,
		sleep:       cfg.Sleep,
		maxAttempts: cfg.MaxAttempts,
		maxWait:     cfg.MaxWait,
		userAgent:   cfg.UserAgent,
		log:         cfg.Logger,
		minting:     map[int64]*mintCall{},
	}
	if c.tokens == nil {
		c.tokens = NewMemoryTokenCache()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = 4
	}
	if c.maxWait <= 0 {
		c.maxWait = 30 * time.Second
	}
	if c.userAgent == "" {
		c.userAgent = "flare-dispatch"
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// splitRepo splits "owner/name"; the error names the bad value.
func splitRepo(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("github: repo %q is not owner/name", repo)
	}
	return owner, name, nil
}

// api builds a go-github client for one attempt. A fresh client per attempt
// keeps go-github's own wall-clock rate-limit bookkeeping out of the way: the
// retry loop in call decides when to wait, with the configured clock and sleep.
func (c *Client) api(authorization string, ex *exchange) *gh.Client {
	g := gh.NewClient(&http.Client{Transport: &authTransport{hc: c.hc, authorization: authorization, ex: ex}})
	g.BaseURL = c.base
	g.UserAgent = c.userAgent
	return g
}

// authTransport sets the Authorization header, sends through the caller's
// client and remembers what came back for the retry decision.
type authTransport struct {
	hc            *http.Client
	authorization string
	ex            *exchange
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", t.authorization)
	t.ex.method, t.ex.path = r.Method, r.URL.Path
	resp, err := t.hc.Do(r)
	if err != nil {
		return nil, err
	}
	t.ex.status = resp.StatusCode
	t.ex.header = resp.Header.Clone()
	return resp, nil
}

// exchange is what one attempt saw on the wire.
type exchange struct {
	method, path string
	status       int // 0 when no response arrived
	header       http.Header
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
