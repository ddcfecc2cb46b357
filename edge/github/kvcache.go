package github

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// KVTokenCache keeps installation tokens in the edge's KV (Workers KV on Cloudflare,
// SQLite locally), so every isolate and every restart shares them instead of minting
// one per process: key "install-token:<installation id>", expiring with the token.
// Values are sealed with AES-256-GCM under Key (edge.TokenCacheKey, derived from
// HMAC_SECRET), so the KV never holds a usable token in clear.
type KVTokenCache struct {
	KV  edge.KV
	Key []byte // 32 bytes
	Now func() time.Time
}

var _ TokenCache = (*KVTokenCache)(nil)

type sealedToken struct {
	Token string    `json:"t"`
	Exp   time.Time `json:"x"`
}

func kvTokenKey(id int64) string { return "install-token:" + strconv.FormatInt(id, 10) }

func (c *KVTokenCache) aead() (cipher.AEAD, error) {
	b, err := aes.NewCipher(c.Key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Get implements TokenCache.
func (c *KVTokenCache) Get(ctx context.Context, id int64) (string, time.Time, bool) {
	v, ok, err := c.KV.Get(ctx, kvTokenKey(id))
	if err != nil || !ok {
		return "", time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return "", time.Time{}, false
	}
	g, err := c.aead()
	if err != nil || len(raw) < g.NonceSize() {
		return "", time.Time{}, false
	}
	plain, err := g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], []byte(kvTokenKey(id)))
	if err != nil {
		return "", time.Time{}, false // another key (HMAC_SECRET rotated): a miss
	}
	var st sealedToken
	if json.Unmarshal(plain, &st) != nil {
		return "", time.Time{}, false
	}
	return st.Token, st.Exp, true
}

// Put implements TokenCache. The entry expires from KV when the client would stop
// using it (60 s before the token does).
func (c *KVTokenCache) Put(ctx context.Context, id int64, token string, exp time.Time) error {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	ttl := exp.Sub(now()) - tokenMargin
	if ttl <= 0 {
		return errors.New("github: token expires too soon to cache")
	}
	g, err := c.aead()
	if err != nil {
		return err
	}
	plain, _ := json.Marshal(sealedToken{Token: token, Exp: exp})
	nonce := make([]byte, g.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := g.Seal(nonce, nonce, plain, []byte(kvTokenKey(id)))
	// Workers KV refuses TTLs under 60 s; such a token is not worth caching anyway.
	return c.KV.Put(ctx, kvTokenKey(id), base64.RawURLEncoding.EncodeToString(sealed), max(ttl, time.Minute))
}
