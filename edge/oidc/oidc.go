// Package oidc makes the edge an OpenID Connect issuer: it signs short-lived ES256 ID
// tokens for its own runs (so an AWS role trusts the edge, and Bedrock needs no
// long-lived AWS key) and serves the discovery document and JWKS that verifiers fetch.
//
// The signing key is a P-256 private JWK (OIDC_SIGNING_JWK); the issuer URL is
// OIDC_ISSUER_URL. Builds for js/wasm: crypto/ecdsa only.
package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// Token lifetimes (contract §5.2: default 900 s, at most 3600 s).
const (
	DefaultTTL = 15 * time.Minute
	MaxTTL     = time.Hour
)

// ErrNotConfigured is returned when the issuer URL or the key is unset.
var ErrNotConfigured = errors.New("oidc: OIDC_ISSUER_URL and OIDC_SIGNING_JWK are not both set")

// JWK is an EC P-256 JSON Web Key; D is set on a private key only.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
}

// KeyError says the configured key cannot be used (served as 500 oidc_key_malformed).
type KeyError struct{ Reason string }

func (e *KeyError) Error() string { return "oidc: OIDC_SIGNING_JWK " + e.Reason }

// Issuer signs tokens. The zero value is unconfigured.
type Issuer struct {
	URL string // without a trailing slash
	key *ecdsa.PrivateKey
	pub JWK
}

// New parses the issuer URL and the private JWK. Both empty gives an unconfigured
// issuer (nil error) whose routes answer 503; one without the other is an error.
func New(issuerURL, jwk string) (*Issuer, error) {
	issuerURL = strings.TrimRight(strings.TrimSpace(issuerURL), "/")
	if issuerURL == "" && strings.TrimSpace(jwk) == "" {
		return &Issuer{}, nil
	}
	if issuerURL == "" || strings.TrimSpace(jwk) == "" {
		return nil, ErrNotConfigured
	}
	if !strings.HasPrefix(issuerURL, "https://") && !strings.HasPrefix(issuerURL, "http://") {
		return nil, fmt.Errorf("oidc: OIDC_ISSUER_URL %q is not an http(s) URL", issuerURL)
	}
	var k JWK
	if err := json.Unmarshal([]byte(jwk), &k); err != nil {
		return nil, &KeyError{"is not JSON: " + err.Error()}
	}
	if k.Kty != "EC" || k.Crv != "P-256" {
		return nil, &KeyError{fmt.Sprintf("must be an EC P-256 key, got kty %q crv %q", k.Kty, k.Crv)}
	}
	x, errX := b64(k.X)
	y, errY := b64(k.Y)
	d, errD := b64(k.D)
	if errX != nil || errY != nil || errD != nil || len(d) == 0 {
		return nil, &KeyError{"has a missing or bad x, y or d"}
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), pad(d))
	if err != nil {
		return nil, &KeyError{"has a bad d: " + err.Error()}
	}
	// The public point must be d·G, or verifiers would reject every token.
	raw, _ := priv.PublicKey.Bytes()
	if string(raw) != string(append(append([]byte{4}, pad(x)...), pad(y)...)) {
		return nil, &KeyError{"x and y are not the public key of d"}
	}
	pub := JWK{Kty: "EC", Crv: "P-256", X: k.X, Y: k.Y, Use: "sig", Alg: "ES256", Kid: k.Kid}
	if pub.Kid == "" {
		pub.Kid = thumbprint(pub)
	}
	return &Issuer{URL: issuerURL, key: priv, pub: pub}, nil
}

// Configured reports whether the issuer can sign.
func (i *Issuer) Configured() bool { return i != nil && i.key != nil }

// Claims are what a token asserts.
type Claims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Jti string `json:"jti"`
}

// Sign returns a compact JWT for audience and subject, valid for ttl (0 = DefaultTTL,
// capped at MaxTTL).
func (i *Issuer) Sign(audience, subject string, ttl time.Duration, now time.Time) (string, error) {
	if !i.Configured() {
		return "", ErrNotConfigured
	}
	if audience == "" || subject == "" {
		return "", fmt.Errorf("oidc: audience and subject are required")
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	ttl = min(ttl, MaxTTL)
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	head, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": i.pub.Kid})
	body, _ := json.Marshal(Claims{Iss: i.URL, Sub: subject, Aud: audience, Iat: now.Unix(), Exp: now.Add(ttl).Unix(),
		Jti: base64.RawURLEncoding.EncodeToString(jti)})
	signing := enc(head) + "." + enc(body)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, i.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return signing + "." + enc(sig), nil
}

// Verify checks a token against a public JWK (what a relying party does with the
// JWKS) and returns its claims; it checks the signature and expiry only.
func Verify(token string, pub JWK, now time.Time) (Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, errors.New("oidc: not a compact JWT")
	}
	x, errX := b64(pub.X)
	y, errY := b64(pub.Y)
	sig, errS := b64(parts[2])
	if errX != nil || errY != nil || errS != nil || len(sig) != 64 {
		return Claims{}, errors.New("oidc: bad key or signature encoding")
	}
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, pad(x)...), pad(y)...))
	if err != nil {
		return Claims{}, fmt.Errorf("oidc: bad public key: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(key, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return Claims{}, errors.New("oidc: signature does not verify")
	}
	payload, err := b64(parts[1])
	if err != nil {
		return Claims{}, err
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Claims{}, err
	}
	if now.Unix() >= c.Exp {
		return c, errors.New("oidc: token expired")
	}
	return c, nil
}

// Discovery is /.well-known/openid-configuration.
func (i *Issuer) Discovery() map[string]any {
	return map[string]any{
		"issuer":                                i.URL,
		"jwks_uri":                              i.URL + "/.well-known/jwks.json",
		"response_types_supported":              []string{"id_token"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"subject_types_supported":               []string{"public"},
		"claims_supported":                      []string{"iss", "sub", "aud", "iat", "exp", "jti"},
	}
}

// JWKS is /.well-known/jwks.json: the public key only.
func (i *Issuer) JWKS() map[string]any { return map[string]any{"keys": []JWK{i.pub}} }

// ServeDiscovery and ServeJWKS are the two public routes: 503 oidc_not_configured
// until the issuer has a key; cacheable for an hour.
func (i *Issuer) ServeDiscovery(w http.ResponseWriter, _ *http.Request) { i.serve(w, i.Discovery) }

// ServeJWKS serves the JWKS.
func (i *Issuer) ServeJWKS(w http.ResponseWriter, _ *http.Request) { i.serve(w, i.JWKS) }

func (i *Issuer) serve(w http.ResponseWriter, doc func() map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	if !i.Configured() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "oidc_not_configured",
			"message": "set OIDC_ISSUER_URL and OIDC_SIGNING_JWK to make this deploy an OIDC issuer"})
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_ = json.NewEncoder(w).Encode(doc())
}

// GenerateJWK makes a new private P-256 JWK (for `flare up` and tests).
func GenerateJWK() (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	d, err := k.Bytes()
	if err != nil {
		return "", err
	}
	pub, err := k.PublicKey.Bytes()
	if err != nil {
		return "", err
	}
	j := JWK{Kty: "EC", Crv: "P-256", X: enc(pub[1:33]), Y: enc(pub[33:]), D: enc(d)}
	b, err := json.Marshal(j)
	return string(b), err
}

// thumbprint is the RFC 7638 JWK thumbprint, a stable key id.
func thumbprint(k JWK) string {
	sum := sha256.Sum256([]byte(`{"crv":"` + k.Crv + `","kty":"` + k.Kty + `","x":"` + k.X + `","y":"` + k.Y + `"}`))
	return enc(sum[:])
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func pad(d []byte) []byte {
	if len(d) >= 32 {
		return d
	}
	return append(make([]byte, 32-len(d)), d...)
}
