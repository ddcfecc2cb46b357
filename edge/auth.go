package edge

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Distinct HKDF info strings: one key per purpose, all derived from HMAC_SECRET.
const (
	infoLogLink = "flare-dispatch/log-link/v1"
	infoAgent   = "flare-dispatch/agent/v1"
	infoBlob    = "flare-dispatch/blob-root/v1"
	infoServer  = "flare-dispatch/agent-server/v1"
)

// AgentServerToken is the token an agent's own server (/start, /cancel) requires from
// the edge: base64url(HMAC(HKDF(HMAC_SECRET, info agent-server), sandbox)). Per
// sandbox, so a token read in one sandbox opens no other.
func AgentServerToken(cfg Config, sandbox string) string {
	m := hmac.New(sha256.New, derive(cfg.HMACSecret, "", infoServer))
	m.Write([]byte(sandbox))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a `sha256=<hex>` header against the raw body in constant
// time. Malformed headers are rejected before any MAC is computed (contract §2.2).
func VerifySignature(secret string, body []byte, header string) bool {
	hexPart, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexPart) != 64 {
		return false
	}
	got, err := hex.DecodeString(hexPart)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return hmac.Equal(got, Sign(secret, body))
}

// Sign is the MAC a caller puts in X-FlareDispatch-Signature (as "sha256=" + hex).
func Sign(secret string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

// SignatureHeader is the full header value for body.
func SignatureHeader(secret string, body []byte) string {
	return "sha256=" + hex.EncodeToString(Sign(secret, body))
}

// Fingerprint is hex(sha256(secret))[0:8]: safe to print, tells secrets apart.
func Fingerprint(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])[:8]
}

func constantEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func derive(secret, extra, info string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(extra+secret), nil, info, 32)
	if err != nil {
		panic(err) // only for lengths over 255*32
	}
	return k
}

// LogToken is the capability token of an execution's logs (contract §3):
// base64url(HMAC(HKDF(LOG_LINK_SECRET||HMAC_SECRET), id))[0:22].
func LogToken(cfg Config, exec string) string {
	m := hmac.New(sha256.New, derive(cfg.HMACSecret, cfg.LogLinkSecret, infoLogLink))
	m.Write([]byte(exec))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))[:22]
}

// AgentClaims are what an agent token carries.
type AgentClaims struct {
	Exec    string `json:"e"`
	Attempt int    `json:"a"`
	Expires int64  `json:"x"`           // unix seconds
	Scope   string `json:"s,omitempty"` // "" = the agent API; ScopeCDP = /v1/browser/cdp only
}

// MintAgentToken returns a run-scoped, expiring token for one attempt.
func MintAgentToken(cfg Config, c AgentClaims) string {
	body, _ := json.Marshal(c)
	p := base64.RawURLEncoding.EncodeToString(body)
	m := hmac.New(sha256.New, derive(cfg.HMACSecret, "", infoAgent))
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var errBadToken = errors.New("agent token invalid")

// VerifyAgentToken checks the MAC, the execution and the expiry.
func VerifyAgentToken(cfg Config, token, exec string, now time.Time) (AgentClaims, error) {
	p, sig, ok := strings.Cut(token, ".")
	if !ok {
		return AgentClaims{}, errBadToken
	}
	m := hmac.New(sha256.New, derive(cfg.HMACSecret, "", infoAgent))
	m.Write([]byte(p))
	want := base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	if !constantEqual(sig, want) {
		return AgentClaims{}, errBadToken
	}
	body, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return AgentClaims{}, errBadToken
	}
	var c AgentClaims
	if err := json.Unmarshal(body, &c); err != nil {
		return AgentClaims{}, errBadToken
	}
	if c.Exec != exec {
		return AgentClaims{}, fmt.Errorf("%w: issued for another execution", errBadToken)
	}
	if now.Unix() > c.Expires {
		return AgentClaims{}, fmt.Errorf("%w: expired", errBadToken)
	}
	return c, nil
}

// BlobRoot is the root key for scoped blob credentials (blobcred).
func BlobRoot(cfg Config) []byte { return derive(cfg.HMACSecret, "", infoBlob) }
