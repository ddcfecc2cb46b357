package github_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/github"
)

// clockKV is an edge.KV with expiry on a given clock (as Workers KV and sqlmeta).
type clockKV struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]string
	exp map[string]time.Time
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
	var e *env
	kv := &clockKV{m: map[string]string{}, exp: map[string]time.Time{}}
	key := edge.TokenCacheKey(edge.Config{HMACSecret: "s3cret"})
	e = setup(t, func(c *github.Config) { c.Tokens = &github.KVTokenCache{KV: kv, Key: key, Now: c.Now} })
	kv.now = e.f.Now
	ctx := context.Background()
	mints := func() int { return len(e.f.CallsTo("POST /app/installations/*/access_tokens")) }
	client := func(k []byte) *github.Client {
		c, err := github.New(github.Config{AppID: e.app.ID, PrivateKeyPEM: e.app.PrivateKeyPEM, HTTPClient: e.f.HTTPClient(),
			BaseURL: e.f.URL(), Now: e.f.Now, Tokens: &github.KVTokenCache{KV: kv, Key: k, Now: e.f.Now}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tok, _, err := e.c.InstallationToken(ctx, e.inst)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range kv.m {
		if !strings.HasPrefix(k, "install-token:") || strings.Contains(v, tok) || strings.Contains(v, "ghs_") {
			t.Fatalf("KV holds %s = %s (token in clear?)", k, v)
		}
		if got := kv.exp[k].Sub(e.f.Now()); got != 59*time.Minute {
			t.Fatalf("KV entry lives %s, want until a minute before the token", got)
		}
	}
	// Another isolate (another client, same KV) uses the cached token.
	if tok2, _, err := client(key).InstallationToken(ctx, e.inst); err != nil || tok2 != tok || mints() != 1 {
		t.Fatalf("second client: %v, same token %v, %d mints", err, tok2 == tok, mints())
	}
	// A deploy with another HMAC_SECRET cannot open the entry: a miss, a fresh token.
	other := edge.TokenCacheKey(edge.Config{HMACSecret: "rotated"})
	if _, _, err := client(other).InstallationToken(ctx, e.inst); err != nil || mints() != 2 {
		t.Fatalf("other key: %v, %d mints", err, mints())
	}
	// Shortly before expiry the entry is gone and a new token is minted.
	e.f.Advance(59*time.Minute + 10*time.Second)
	if _, _, err := client(key).InstallationToken(ctx, e.inst); err != nil || mints() != 3 {
		t.Fatalf("near expiry: %v, %d mints", err, mints())
	}
}
