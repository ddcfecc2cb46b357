package github

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// JWT timing, as GitHub asks: iat backdated for clock drift, and a lifetime
// that stays under GitHub's 10-minute ceiling.
const (
	jwtBackdate = 60 * time.Second
	jwtLifetime = 9 * time.Minute
)

// jwtSigner signs App JWTs (RS256) with a parsed private key.
type jwtSigner struct{ key *rsa.PrivateKey }

// newJWTSigner parses a PKCS#8 ("PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY")
// PEM block. Secrets pasted through a single-line variable often carry literal
// `\n` sequences; those are turned back into newlines first.
func newJWTSigner(pemBytes []byte) (*jwtSigner, error) {
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
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("github: app private key (PKCS#1): %w", err)
		}
		return &jwtSigner{key: key}, nil
	case "PRIVATE KEY":
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("github: app private key (PKCS#8): %w", err)
		}
		key, ok := parsed.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("github: app private key is %T, want RSA", parsed)
		}
		return &jwtSigner{key: key}, nil
	default:
		return nil, fmt.Errorf("github: app private key has PEM type %q, want PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))

// sign returns an App JWT valid from now−60 s to now+9 min.
func (s *jwtSigner) sign(appID int64, now time.Time) (string, error) {
	claims, err := json.Marshal(struct {
		IssuedAt  int64 `json:"iat"`
		ExpiresAt int64 `json:"exp"`
		Issuer    int64 `json:"iss"`
	}{
		IssuedAt:  now.Add(-jwtBackdate).Unix(),
		ExpiresAt: now.Add(jwtLifetime).Unix(),
		Issuer:    appID,
	})
	if err != nil {
		return "", err
	}
	signingInput := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("github: sign app jwt: %w", err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
