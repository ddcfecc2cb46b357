// Package github is the GitHub App client of both platforms (the Worker and `flare
// up`): the edge's Checks, RepoTokens and GitHubAPI ports over the GitHub REST API,
// written by hand on an injected edge.HTTPDoer (the fetch transport in the Worker, an
// *http.Client natively). It is not built on go-github: go-github needs an
// *http.Client, which links net/http's client transport into the Worker; measured,
// that put the Worker at 3.9 MiB gzip and slowed its cold start (specs/cloudflare.md).
//
// App JWTs (RS256), installation tokens minted once and cached (in memory and, sealed
// with AES-256-GCM, in the edge's KV), installation lookup by repository, retries of
// rate limits and transient failures within bounds, one fresh token after a 401,
// check-runs created with an external_id so a retried create never leaves a
// duplicate, annotations in batches of 50, and the Git Data API sequence of a
// writeback (blobs, tree, commit, branch, pull request).
//
// Failed calls return an error that errors.As finds as *edge.GitHubError (status,
// reason, when to retry); a call whose context ended returns the context's error.
package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// DefaultBaseURL is the public GitHub REST API.
const DefaultBaseURL = "https://api.github.com/"

// Failure reasons (edge.GitHubError.Reason).
const (
	ReasonRateLimited  = "rate-limited"
	ReasonUnauthorized = "unauthorized"
	ReasonTransient    = "transient"
	ReasonOther        = "other"
)

// Config is what New needs; AppID, PrivateKeyPEM and HTTP are required.
type Config struct {
	AppID         int64
	PrivateKeyPEM []byte // PKCS#1 or PKCS#8 (RSA); literal `\n` sequences are accepted
	HTTP          edge.HTTPDoer
	BaseURL       string // default DefaultBaseURL
	// KV keeps installation tokens across isolates and restarts, sealed with
	// CacheKey (32 bytes, edge.TokenCacheKey); nil keeps them in memory only.
	KV       edge.KV
	CacheKey []byte
	Now      func() time.Time                                 // default time.Now
	Sleep    func(ctx context.Context, d time.Duration) error // default a timer honouring ctx
	// MaxAttempts bounds the tries per request (default 4); MaxWait is the longest
	// single wait before a retry (default 30 s): a longer rate limit is returned.
	MaxAttempts int
	MaxWait     time.Duration
	UserAgent   string       // default "flare-dispatch"
	Log         *slog.Logger // default discards; tokens and keys are never logged
}

// Client is a GitHub App client, safe for concurrent use.
type Client struct {
	cfg  Config
	key  *signer
	base *url.URL

	mu       sync.Mutex
	tokens   map[int64]cachedToken
	minting  map[int64]*mint
	installs map[string]cachedInstall // lower-case repo → installation
}

type cachedToken struct {
	token string
	exp   time.Time
}

type cachedInstall struct {
	id  int64
	exp time.Time
}

type mint struct {
	done  chan struct{}
	token string
	exp   time.Time
	err   error
}

var (
	_ edge.Checks     = (*Client)(nil)
	_ edge.RepoTokens = (*Client)(nil)
	_ edge.GitHubAPI  = (*Client)(nil)
)

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.AppID <= 0 {
		return nil, fmt.Errorf("github: app id must be > 0, got %d", cfg.AppID)
	}
	if cfg.HTTP == nil {
		return nil, errors.New("github: an HTTP client is required")
	}
	if cfg.KV != nil && len(cfg.CacheKey) != 32 {
		return nil, fmt.Errorf("github: token cache key has %d bytes, want 32", len(cfg.CacheKey))
	}
	key, err := parseKey(cfg.PrivateKeyPEM)
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 30 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "flare-dispatch"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, key: key, base: base, tokens: map[int64]cachedToken{},
		minting: map[int64]*mint{}, installs: map[string]cachedInstall{}}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// apiError is a failed call: the port's error plus what GitHub said in full (its
// message and the per-field errors, where "already exists" lives).
type apiError struct {
	edge.GitHubError
	method, path string
	detail       string
	header       http.Header
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("github: %s %s: %d %s: %s", e.method, e.path, e.Status, e.Reason, e.Message)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// Unwrap makes errors.As find the *edge.GitHubError.
func (e *apiError) Unwrap() error { return &e.GitHubError }

func isStatus(err error, status int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == status
}

func alreadyExists(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity &&
		strings.Contains(strings.ToLower(ae.detail), "already exists")
}

// request is one API call.
type request struct {
	method, path string // path relative to the base URL, without a leading slash
	query        url.Values
	body         any // JSON-encoded when not nil
	out          any // JSON-decoded from a 2xx when not nil
	header       http.Header
}

// send makes one attempt with the given Authorization value.
func (c *Client) send(ctx context.Context, authorization string, r request) (*apiError, error) {
	u := c.base.String() + r.path // r.path is escaped already
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set("Authorization", authorization)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	ae := &apiError{method: r.method, path: "/" + r.path}
	res, err := c.cfg.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("github: %s /%s: %w", r.method, r.path, ctx.Err())
		}
		ae.Reason, ae.Message = ReasonTransient, err.Error()
		return ae, nil
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 32<<20))
	ae.Status, ae.header = res.StatusCode, res.Header
	if err != nil {
		ae.Reason, ae.Message = ReasonTransient, "reading the response: "+err.Error()
		return ae, nil
	}
	if res.StatusCode/100 == 2 {
		if r.out != nil && len(raw) > 0 {
			if err := json.Unmarshal(raw, r.out); err != nil {
				ae.Reason, ae.Message = ReasonOther, "response is not the expected JSON: "+err.Error()
				return ae, nil
			}
		}
		if r.header != nil {
			for k, v := range res.Header {
				r.header[k] = v
			}
		}
		return nil, nil
	}
	var e struct {
		Message string `json:"message"`
		Doc     string `json:"documentation_url"`
		Errors  []struct {
			Message string `json:"message"`
			Code    string `json:"code"`
		} `json:"errors"`
	}
	_ = json.Unmarshal(raw, &e)
	ae.Message, ae.detail = e.Message, e.Message
	for _, fe := range e.Errors {
		ae.detail += "; " + fe.Message + " " + fe.Code
	}
	if ae.Message == "" {
		ae.Message = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	msg := strings.ToLower(e.Message)
	switch s := res.StatusCode; {
	case s == http.StatusTooManyRequests,
		s == http.StatusForbidden && res.Header.Get("X-RateLimit-Remaining") == "0",
		s == http.StatusForbidden && (strings.Contains(msg, "secondary rate limit") || strings.Contains(msg, "abuse") ||
			strings.Contains(e.Doc, "secondary-rate-limits")):
		ae.Reason = ReasonRateLimited
		if d, ok := c.serverWait(res.Header); ok {
			ae.RetryAfter = d
		} else {
			ae.RetryAfter = time.Minute // GitHub: wait at least a minute
		}
	case s == http.StatusUnauthorized:
		ae.Reason = ReasonUnauthorized
	case s >= 500:
		ae.Reason = ReasonTransient
		if d, ok := c.serverWait(res.Header); ok {
			ae.RetryAfter = d
		}
	default:
		ae.Reason = ReasonOther
	}
	return ae, nil
}

// serverWait reads Retry-After (seconds or an HTTP date), then an exhausted
// x-ratelimit-remaining with x-ratelimit-reset.
func (c *Client) serverWait(h http.Header) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(c.cfg.Now()), 0), true
		}
	}
	if h.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Unix(reset, 0).Sub(c.cfg.Now()), 0), true
		}
	}
	return 0, false
}

// backoff is the wait before retry n (1-based) when GitHub named none: 0.5 s
// doubling to at most 8 s, half of it jittered.
func backoff(n int) time.Duration {
	d := 500 * time.Millisecond << min(n-1, 4)
	return d/2 + rand.N(d/2+1)
}

// do runs r with the App JWT (inst 0) or the installation's token, retrying rate
// limits and transient failures within MaxAttempts, MaxWait and ctx's deadline.
// before, if set, runs before every attempt after the first and may end the call
// with a result of its own (done). A 401 with an installation token mints a fresh
// token once.
func (c *Client) do(ctx context.Context, inst int64, r request, before func(lastStatus int) (done bool, err error)) error {
	refreshed, force := false, false
	last := -1
	for attempt := 1; ; attempt++ {
		if before != nil && last >= 0 {
			if done, err := before(last); done || err != nil {
				return err
			}
		}
		authz, err := c.authorization(ctx, inst, force)
		if err != nil {
			return err
		}
		force = false
		ae, err := c.send(ctx, authz, r)
		if err != nil || ae == nil {
			return err
		}
		last = ae.Status
		if ae.Reason == ReasonUnauthorized && inst != 0 && !refreshed {
			c.cfg.Log.Warn("github: installation token refused, minting a new one", "installation", inst, "path", ae.path)
			refreshed, force = true, true
			attempt--
			continue
		}
		if ae.Reason != ReasonRateLimited && ae.Reason != ReasonTransient {
			return ae
		}
		wait := ae.RetryAfter
		if wait == 0 {
			wait = backoff(attempt)
		}
		ae.RetryAfter = wait
		if attempt >= c.cfg.MaxAttempts || wait > c.cfg.MaxWait {
			return ae
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return ae
		}
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("github: %s %s: waiting to retry: %w", ae.method, ae.path, err)
		}
	}
}

// authorization is "Bearer <App JWT>" for inst 0, else the installation's token.
func (c *Client) authorization(ctx context.Context, inst int64, force bool) (string, error) {
	if inst == 0 {
		jwt, err := c.key.jwt(c.cfg.AppID, c.cfg.Now())
		if err != nil {
			return "", err
		}
		return "Bearer " + jwt, nil
	}
	tok, _, err := c.installationToken(ctx, inst, force)
	if err != nil {
		return "", err
	}
	return "Bearer " + tok, nil
}

// tokenMargin is how long before its expiry a cached token stops being used.
const tokenMargin = 60 * time.Second

// installationToken returns a token valid for more than another minute: from memory,
// from the KV, or minted (one mint per installation at a time).
func (c *Client) installationToken(ctx context.Context, id int64, force bool) (string, time.Time, error) {
	if id <= 0 {
		return "", time.Time{}, fmt.Errorf("github: installation id must be > 0, got %d", id)
	}
	fresh := func(t cachedToken) bool { return t.token != "" && c.cfg.Now().Add(tokenMargin).Before(t.exp) }
	c.mu.Lock()
	t, ok := c.tokens[id]
	c.mu.Unlock()
	if !force && ok && fresh(t) {
		return t.token, t.exp, nil
	}
	if !force {
		if t, ok := c.kvGet(ctx, id); ok && fresh(t) {
			c.mu.Lock()
			c.tokens[id] = t
			c.mu.Unlock()
			return t.token, t.exp, nil
		}
	}
	c.mu.Lock()
	m, inFlight := c.minting[id]
	if !inFlight {
		m = &mint{done: make(chan struct{})}
		c.minting[id] = m
	}
	c.mu.Unlock()
	if !inFlight {
		m.token, m.exp, m.err = c.mint(ctx, id)
		c.mu.Lock()
		delete(c.minting, id)
		if m.err == nil {
			c.tokens[id] = cachedToken{m.token, m.exp}
		}
		c.mu.Unlock()
		close(m.done)
	}
	select {
	case <-m.done:
		return m.token, m.exp, m.err
	case <-ctx.Done():
		return "", time.Time{}, fmt.Errorf("github: waiting for installation %d token: %w", id, ctx.Err())
	}
}

func (c *Client) mint(ctx context.Context, id int64) (string, time.Time, error) {
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := c.do(ctx, 0, request{method: http.MethodPost, path: fmt.Sprintf("app/installations/%d/access_tokens", id), out: &out}, nil); err != nil {
		return "", time.Time{}, err
	}
	if out.Token == "" {
		return "", time.Time{}, fmt.Errorf("github: installation %d: access token response has no token", id)
	}
	c.kvPut(ctx, id, cachedToken{out.Token, out.ExpiresAt})
	return out.Token, out.ExpiresAt, nil
}

// installTTL is how long a looked-up installation id is remembered.
const installTTL = 10 * time.Minute

// InstallationForRepo finds the App's installation on repo (GET
// /repos/{owner}/{repo}/installation with the App JWT).
func (c *Client) InstallationForRepo(ctx context.Context, repo string) (int64, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return 0, err
	}
	key := strings.ToLower(repo)
	c.mu.Lock()
	ci, ok := c.installs[key]
	c.mu.Unlock()
	if ok && c.cfg.Now().Before(ci.exp) {
		return ci.id, nil
	}
	var out struct {
		ID int64 `json:"id"`
	}
	if err := c.do(ctx, 0, request{method: http.MethodGet, path: "repos/" + owner + "/" + name + "/installation", out: &out}, nil); err != nil {
		return 0, err
	}
	if out.ID <= 0 {
		return 0, errors.New("github: installation response has no id")
	}
	c.mu.Lock()
	c.installs[key] = cachedInstall{out.ID, c.cfg.Now().Add(installTTL)}
	c.mu.Unlock()
	return out.ID, nil
}

// target resolves the installation (0: look it up) and splits the repository.
func (c *Client) target(ctx context.Context, inst int64, repo string) (int64, string, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return 0, "", err
	}
	prefix := "repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/"
	switch {
	case inst > 0:
		return inst, prefix, nil
	case inst < 0:
		return 0, "", fmt.Errorf("github: installation id must be ≥ 0, got %d", inst)
	}
	id, err := c.InstallationForRepo(ctx, repo)
	return id, prefix, err
}

func splitRepo(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("github: repo %q is not owner/name", repo)
	}
	return owner, name, nil
}

// RepoToken implements edge.RepoTokens.
func (c *Client) RepoToken(ctx context.Context, repo string, inst int64) (string, time.Time, error) {
	inst, _, err := c.target(ctx, inst, repo)
	if err != nil {
		return "", time.Time{}, err
	}
	return c.installationToken(ctx, inst, false)
}
