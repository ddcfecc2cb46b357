package github

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gh "github.com/google/go-github/v62/github"
)

// tokenMargin is how long before its expiry a cached installation token stops
// being used.
const tokenMargin = 60 * time.Second

// TokenCache keeps installation tokens between calls. The in-memory default
// suits one process; the Cloudflare build can keep them in KV. Get reports
// ok=false for a miss; the client itself ignores entries that expire within
// 60 s. Put errors are logged and otherwise ignored (the token is still used).
type TokenCache interface {
	Get(ctx context.Context, installationID int64) (token string, exp time.Time, ok bool)
	Put(ctx context.Context, installationID int64, token string, exp time.Time) error
}

// MemoryTokenCache is the default TokenCache: a map guarded by a mutex.
type MemoryTokenCache struct {
	mu sync.Mutex
	m  map[int64]cachedToken
}

type cachedToken struct {
	token string
	exp   time.Time
}

// NewMemoryTokenCache returns an empty in-memory cache.
func NewMemoryTokenCache() *MemoryTokenCache {
	return &MemoryTokenCache{m: map[int64]cachedToken{}}
}

// Get implements TokenCache.
func (m *MemoryTokenCache) Get(_ context.Context, id int64) (string, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.m[id]
	return t.token, t.exp, ok
}

// Put implements TokenCache.
func (m *MemoryTokenCache) Put(_ context.Context, id int64, token string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[id] = cachedToken{token: token, exp: exp}
	return nil
}

// mintCall is one token request that concurrent callers share.
type mintCall struct {
	done  chan struct{}
	token string
	exp   time.Time
	err   error
}

// InstallationToken returns a token for the installation, from the cache when
// it is valid for more than another 60 s, else freshly minted
// (POST /app/installations/{id}/access_tokens with the App JWT) and cached.
// The agent API hands it out as git credentials; never log it.
func (c *Client) InstallationToken(ctx context.Context, installationID int64) (string, time.Time, error) {
	return c.installationToken(ctx, installationID, false)
}

func (c *Client) installationToken(ctx context.Context, id int64, force bool) (string, time.Time, error) {
	if id <= 0 {
		return "", time.Time{}, fmt.Errorf("github: installation id must be > 0, got %d", id)
	}
	if !force {
		if tok, exp, ok := c.tokens.Get(ctx, id); ok && tok != "" && c.now().Add(tokenMargin).Before(exp) {
			return tok, exp, nil
		}
	}
	c.mintMu.Lock()
	mc, inFlight := c.minting[id]
	if !inFlight {
		mc = &mintCall{done: make(chan struct{})}
		c.minting[id] = mc
	}
	c.mintMu.Unlock()
	if !inFlight {
		mc.token, mc.exp, mc.err = c.mint(ctx, id)
		c.mintMu.Lock()
		delete(c.minting, id)
		c.mintMu.Unlock()
		close(mc.done)
	}
	select {
	case <-mc.done:
		return mc.token, mc.exp, mc.err
	case <-ctx.Done():
		return "", time.Time{}, fmt.Errorf("github: waiting for installation %d token: %w", id, ctx.Err())
	}
}

func (c *Client) mint(ctx context.Context, id int64) (string, time.Time, error) {
	var tok *gh.InstallationToken
	err := c.call(ctx, 0, func(g *gh.Client) (err error) {
		tok, _, err = g.Apps.CreateInstallationToken(ctx, id, nil)
		return err
	})
	if err != nil {
		return "", time.Time{}, err
	}
	if tok.GetToken() == "" {
		return "", time.Time{}, fmt.Errorf("github: installation %d: access token response has no token", id)
	}
	exp := tok.GetExpiresAt().Time
	if !exp.IsZero() {
		if err := c.tokens.Put(ctx, id, tok.GetToken(), exp); err != nil {
			c.log.Warn("github: caching installation token failed", "installation", id, "err", err)
		}
	}
	return tok.GetToken(), exp, nil
}

// authorization is the Authorization header value: the App JWT for inst 0,
// else the installation's token.
func (c *Client) authorization(ctx context.Context, inst int64, forceMint bool) (string, error) {
	if inst == 0 {
		jwt, err := c.signer.sign(c.appID, c.now())
		if err != nil {
			return "", err
		}
		return "Bearer " + jwt, nil
	}
	tok, _, err := c.installationToken(ctx, inst, forceMint)
	if err != nil {
		return "", err
	}
	return "Bearer " + tok, nil
}

// InstallationForRepo finds the App's installation on a repository
// (GET /repos/{owner}/{repo}/installation with the App JWT). A repository the
// App is not installed on is an *APIError with Status 404.
func (c *Client) InstallationForRepo(ctx context.Context, repo string) (int64, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return 0, err
	}
	var inst *gh.Installation
	err = c.call(ctx, 0, func(g *gh.Client) (err error) {
		inst, _, err = g.Apps.FindRepositoryInstallation(ctx, owner, name)
		return err
	})
	if err != nil {
		return 0, err
	}
	if inst.GetID() <= 0 {
		return 0, errors.New("github: installation response has no id")
	}
	return inst.GetID(), nil
}

// target resolves the repository and installation every repo-scoped method
// starts from: inst 0 means look it up.
func (c *Client) target(ctx context.Context, inst int64, repo string) (id int64, owner, name string, err error) {
	owner, name, err = splitRepo(repo)
	if err != nil {
		return 0, "", "", err
	}
	switch {
	case inst > 0:
		return inst, owner, name, nil
	case inst < 0:
		return 0, "", "", fmt.Errorf("github: installation id must be ≥ 0, got %d", inst)
	}
	id, err = c.InstallationForRepo(ctx, repo)
	return id, owner, name, err
}

var _ TokenCache = (*MemoryTokenCache)(nil)
