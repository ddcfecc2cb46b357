package github

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"time"

	"context"
)

// signer signs App JWTs (RS256).
type signer struct{ key *rsa.PrivateKey }

// oidRSA is rsaEncryption, the algorithm of an RSA key in PKCS#8.
var oidRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}

// parseKey reads a PKCS#1 ("RSA PRIVATE KEY", what GitHub hands out) or PKCS#8
// ("PRIVATE KEY") RSA key. PKCS#8 is unwrapped here rather than with
// x509.ParsePKCS8PrivateKey, which would link the EC, Ed25519 and ML-KEM parsers
// into the Worker for nothing.
func parseKey(pemBytes []byte) (*signer, error) {
	if len(bytes.TrimSpace(pemBytes)) == 0 {
		return nil, errors.New("github: app private key is empty")
	}
	if !bytes.Contains(pemBytes, []byte("\n")) && bytes.Contains(pemBytes, []byte(`\n`)) {
		pemBytes = bytes.ReplaceAll(pemBytes, []byte(`\n`), []byte("\n"))
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("github: app private key is not PEM")
	}
	der := block.Bytes
	switch block.Type {
	case "RSA PRIVATE KEY":
	case "PRIVATE KEY":
		var info struct {
			Version int
			Algo    struct {
				Algorithm  asn1.ObjectIdentifier
				Parameters asn1.RawValue `asn1:"optional"`
			}
			PrivateKey []byte
		}
		if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) > 0 {
			return nil, fmt.Errorf("github: app private key (PKCS#8): not a PrivateKeyInfo")
		}
		if !info.Algo.Algorithm.Equal(oidRSA) {
			return nil, fmt.Errorf("github: app private key (PKCS#8) has algorithm %v, want RSA", info.Algo.Algorithm)
		}
		der = info.PrivateKey
	default:
		return nil, fmt.Errorf("github: app private key has PEM type %q, want RSA PRIVATE KEY or PRIVATE KEY", block.Type)
	}
	key, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("github: app private key: %w", err)
	}
	return &signer{key: key}, nil
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))

// jwt returns an App JWT valid from now−60 s (clock drift) to now+9 min (GitHub's
// ceiling is 10).
func (s *signer) jwt(appID int64, now time.Time) (string, error) {
	claims := `{"iat":` + strconv.FormatInt(now.Add(-time.Minute).Unix(), 10) +
		`,"exp":` + strconv.FormatInt(now.Add(9*time.Minute).Unix(), 10) +
		`,"iss":` + strconv.FormatInt(appID, 10) + `}`
	input := jwtHeader + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("github: sign app jwt: %w", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// The KV copy of an installation token: key "install-token:<id>", value
// base64url(nonce ‖ AES-256-GCM(CacheKey, {"t","x"}, aad = key)), expiring a minute
// before the token (when the client would stop using it), so the KV never holds a
// usable token in clear and another key (a rotated HMAC_SECRET) reads as a miss.

func kvKey(id int64) string { return "install-token:" + strconv.FormatInt(id, 10) }

type sealed struct {
	Token string    `json:"t"`
	Exp   time.Time `json:"x"`
}

func (c *Client) aead() (cipher.AEAD, error) {
	b, err := aes.NewCipher(c.cfg.CacheKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (c *Client) kvGet(ctx context.Context, id int64) (cachedToken, bool) {
	if c.cfg.KV == nil {
		return cachedToken{}, false
	}
	v, ok, err := c.cfg.KV.Get(ctx, kvKey(id))
	if err != nil || !ok {
		return cachedToken{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	g, gerr := c.aead()
	if err != nil || gerr != nil || len(raw) < g.NonceSize() {
		return cachedToken{}, false
	}
	plain, err := g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], []byte(kvKey(id)))
	if err != nil {
		return cachedToken{}, false
	}
	var s sealed
	if json.Unmarshal(plain, &s) != nil {
		return cachedToken{}, false
	}
	return cachedToken{s.Token, s.Exp}, true
}

func (c *Client) kvPut(ctx context.Context, id int64, t cachedToken) {
	if c.cfg.KV == nil || t.exp.IsZero() {
		return
	}
	g, err := c.aead()
	if err != nil {
		return
	}
	plain, _ := json.Marshal(sealed{t.token, t.exp})
	nonce := make([]byte, g.NonceSize())
	_, _ = rand.Read(nonce)
	v := base64.RawURLEncoding.EncodeToString(g.Seal(nonce, nonce, plain, []byte(kvKey(id))))
	ttl := t.exp.Sub(c.cfg.Now()) - tokenMargin
	if ttl <= 0 {
		return
	}
	if err := c.cfg.KV.Put(ctx, kvKey(id), v, ttl); err != nil {
		c.cfg.Log.Warn("github: caching installation token failed", "installation", id, "err", err)
	}
}
