package oidc_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/oidc"
)

func issuer(t *testing.T) *oidc.Issuer {
	t.Helper()
	jwk, err := oidc.GenerateJWK()
	if err != nil {
		t.Fatal(err)
	}
	i, err := oidc.New("https://runs.example.com/", jwk)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// Contract §12 row 20: 503 when unset; the JWKS carries no private part; a token
// verifies with the JWKS and carries iss/sub/aud/iat/exp/jti.
func TestRoutesAnswer503UntilConfigured(t *testing.T) {
	i, err := oidc.New("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []http.HandlerFunc{i.ServeDiscovery, i.ServeJWKS} {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), "oidc_not_configured") {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	if _, err := oidc.New("https://x", ""); err == nil {
		t.Fatal("issuer without key accepted")
	}
}

func TestTokenVerifiesWithTheServedJWKS(t *testing.T) {
	i := issuer(t)
	rec := httptest.NewRecorder()
	i.ServeJWKS(rec, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	if rec.Code != 200 || strings.Contains(rec.Body.String(), `"d"`) || rec.Header().Get("Cache-Control") != "public, max-age=3600" {
		t.Fatalf("%d %s %v", rec.Code, rec.Body, rec.Header())
	}
	var set struct{ Keys []oidc.JWK }
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Alg != "ES256" {
		t.Fatalf("%+v %v", set, err)
	}
	rec = httptest.NewRecorder()
	i.ServeDiscovery(rec, httptest.NewRequest("GET", "/.well-known/openid-configuration", nil))
	var disc map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &disc)
	if disc["issuer"] != "https://runs.example.com" || disc["jwks_uri"] != "https://runs.example.com/.well-known/jwks.json" {
		t.Fatalf("%v", disc)
	}

	now := time.Unix(1_800_000_000, 0)
	tok, err := i.Sign("sts.amazonaws.com", "pr-review:exec-1", 2*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := oidc.Verify(tok, set.Keys[0], now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if c.Iss != "https://runs.example.com" || c.Aud != "sts.amazonaws.com" || c.Sub != "pr-review:exec-1" || c.Jti == "" ||
		c.Iat != now.Unix() || c.Exp != now.Add(oidc.MaxTTL).Unix() {
		t.Fatalf("claims %+v (ttl must be capped at an hour)", c)
	}
	if _, err := oidc.Verify(tok, set.Keys[0], now.Add(2*time.Hour)); err == nil {
		t.Fatal("expired token verified")
	}
	other := issuer(t)
	if _, err := oidc.Verify(tok, other.JWKS()["keys"].([]oidc.JWK)[0], now); err == nil {
		t.Fatal("token verified with another key")
	}
	tampered := tok[:len(tok)-4] + "AAAA"
	if _, err := oidc.Verify(tampered, set.Keys[0], now); err == nil {
		t.Fatal("tampered token verified")
	}
}

func TestKeyWhosePublicPartIsNotDIsRefused(t *testing.T) {
	a, _ := oidc.GenerateJWK()
	b, _ := oidc.GenerateJWK()
	var ka, kb oidc.JWK
	_ = json.Unmarshal([]byte(a), &ka)
	_ = json.Unmarshal([]byte(b), &kb)
	ka.D = kb.D
	mixed, _ := json.Marshal(ka)
	if _, err := oidc.New("https://x", string(mixed)); err == nil || !strings.Contains(err.Error(), "not the public key") {
		t.Fatalf("mixed key: %v", err)
	}
}
