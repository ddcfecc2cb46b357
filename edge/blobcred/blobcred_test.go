package blobcred

import (
	"bytes"
	"encoding/base64"
	"errors"
	"path"
	"strings"
	"testing"
	"time"
)

var (
	testRoot = []byte("0123456789abcdef0123456789abcdef")
	t0       = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func mustMint(t testing.TB, exec string, grants []Grant, ttl time.Duration) (string, string) {
	t.Helper()
	id, secret, err := Mint(testRoot, exec, grants, ttl, t0)
	if err != nil {
		t.Fatal(err)
	}
	return id, secret
}

func TestMintVerifyRoundTrip(t *testing.T) {
	grants := ExecGrants("run:acme-web:0123456789ab-01", "acme/web", false)
	id, secret := mustMint(t, "run:acme-web:0123456789ab-01", grants, time.Hour)
	if !strings.HasPrefix(id, KeyIDPrefix) || strings.ContainsAny(id, "/,= +") {
		t.Fatalf("access key id %q: want FDB1 prefix and only [A-Za-z0-9_-]", id)
	}
	c, got, err := Verify(testRoot, id, t0.Add(59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got != secret {
		t.Fatalf("secret from Verify %q != secret from Mint %q", got, secret)
	}
	if c.Exec != "run:acme-web:0123456789ab-01" || !c.Expires.Equal(t0.Add(time.Hour)) || len(c.Grants) != 3 {
		t.Fatalf("claims %+v", c)
	}
	if c.Grants[2] != (Grant{"cache/acme/web/", Read}) {
		t.Fatalf("cache grant %+v", c.Grants[2])
	}
	t.Logf("access key id: %d chars, secret: %d chars", len(id), len(secret))

	id2, secret2 := mustMint(t, "run:acme-web:0123456789ab-01", grants, time.Hour)
	if id2 != id || secret2 != secret {
		t.Fatal("Mint is not deterministic")
	}
	id3, secret3 := mustMint(t, "run:acme-web:0123456789ab-02", grants, time.Hour)
	if id3 == id || secret3 == secret {
		t.Fatal("different executions share a credential")
	}
}

func TestVerifyRejectsTamperedKeyID(t *testing.T) {
	id, _ := mustMint(t, "exec-1", ExecGrants("exec-1", "o/r", true), time.Hour)
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := len(KeyIDPrefix); i < len(id); i++ {
		for _, c := range []byte{alphabet[(strings.IndexByte(alphabet, id[i])+1)%64], alphabet[(strings.IndexByte(alphabet, id[i])+32)%64]} {
			bad := id[:i] + string(c) + id[i+1:]
			if _, _, err := Verify(testRoot, bad, t0); !errors.Is(err, ErrForged) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("char %d changed to %q: err = %v, want forged or malformed", i, c, err)
			}
		}
	}
	for _, bad := range []string{"", "FDB1", "FDB2" + id[4:], id + "A", id[:len(id)-1], strings.ToLower(id), "AKIAIOSFODNN7EXAMPLE"} {
		if _, _, err := Verify(testRoot, bad, t0); err == nil {
			t.Fatalf("Verify(%q) accepted", bad)
		}
	}
}

func TestVerifyRejectsOtherRoot(t *testing.T) {
	id, _ := mustMint(t, "exec-1", ExecGrants("exec-1", "o/r", true), time.Hour)
	other := bytes.Repeat([]byte{7}, 32)
	if _, _, err := Verify(other, id, t0); !errors.Is(err, ErrForged) {
		t.Fatalf("err = %v, want ErrForged", err)
	}
}

func TestVerifyRejectsExpired(t *testing.T) {
	id, _ := mustMint(t, "exec-1", ExecGrants("exec-1", "o/r", true), 10*time.Minute)
	if _, _, err := Verify(testRoot, id, t0.Add(10*time.Minute-time.Nanosecond)); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	for _, at := range []time.Duration{10 * time.Minute, 11 * time.Minute, 48 * time.Hour} {
		if _, _, err := Verify(testRoot, id, t0.Add(at)); !errors.Is(err, ErrExpired) {
			t.Fatalf("at +%s: err = %v, want ErrExpired", at, err)
		}
	}
}

func TestMintRejectsBadInput(t *testing.T) {
	ok := []Grant{{"logs/e1/", ReadWrite}}
	cases := []struct {
		name   string
		root   []byte
		exec   string
		grants []Grant
		ttl    time.Duration
	}{
		{"short root", []byte("short"), "exec-1", ok, time.Hour},
		{"exec too short", testRoot, "e1", ok, time.Hour},
		{"exec with slash", testRoot, "exec/1", ok, time.Hour},
		{"exec too long", testRoot, strings.Repeat("e", 129), ok, time.Hour},
		{"no grants", testRoot, "exec-1", nil, time.Hour},
		{"too many grants", testRoot, "exec-1", make([]Grant, MaxGrants+1), time.Hour},
		{"prefix without slash", testRoot, "exec-1", []Grant{{"logs/e1", Read}}, time.Hour},
		{"root prefix", testRoot, "exec-1", []Grant{{"/", Read}}, time.Hour},
		{"empty prefix", testRoot, "exec-1", []Grant{{"", Read}}, time.Hour},
		{"dot-dot prefix", testRoot, "exec-1", []Grant{{"logs/../", Read}}, time.Hour},
		{"double slash prefix", testRoot, "exec-1", []Grant{{"logs//", Read}}, time.Hour},
		{"encoded prefix", testRoot, "exec-1", []Grant{{"logs/%2e%2e/", Read}}, time.Hour},
		{"no permission", testRoot, "exec-1", []Grant{{"logs/e1/", 0}}, time.Hour},
		{"unknown permission", testRoot, "exec-1", []Grant{{"logs/e1/", 4}}, time.Hour},
		{"zero ttl", testRoot, "exec-1", ok, 0},
		{"ttl too long", testRoot, "exec-1", ok, MaxTTL + time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := Mint(c.root, c.exec, c.grants, c.ttl, t0); err == nil {
				t.Fatal("Mint accepted")
			}
		})
	}
}

func TestValidKey(t *testing.T) {
	good := []string{"logs/e1/exec.ndjson", "artifacts/e1/report/index.html", "a", "a/b c/d", "logs/e1/…utf8", "logs/e1/50%off", "logs/e1/.hidden", "logs/e1/a..b"}
	bad := []string{"", "/logs/e1/x", "logs/e1/", "logs//x", "logs/e1/../e2/x", "logs/e1/./x", "..", "logs/e1/..",
		"logs/e1/%2e%2e/x", "logs/e1/%2F", "logs\\e1", "logs/e1/\x00", "logs/e1/\n", "logs/e1/\x7f", "logs/e1/\xff", strings.Repeat("a", 1025)}
	for _, k := range good {
		if !ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	for _, k := range bad {
		if ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
}

func TestClaimsAllows(t *testing.T) {
	c := Claims{Exec: "e1", Grants: []Grant{{"logs/e1/", ReadWrite}, {"cache/o/r/", Read}}}
	cases := []struct {
		key  string
		perm Perm
		want bool
	}{
		{"logs/e1/exec.ndjson", Write, true},
		{"logs/e1/exec.ndjson", Read, true},
		{"logs/e1/exec.ndjson", ReadWrite, true},
		{"cache/o/r/node-abc.tar.gz", Read, true},
		{"cache/o/r/node-abc.tar.gz", Write, false},
		{"logs/e2/exec.ndjson", Read, false},
		{"logs/e1", Read, false},
		{"logs/e10/x", Read, false},
		{"logs/e1/../e2/x", Read, false},
		{"logs/e1/%2e%2e/e2/x", Read, false},
		{"logs/e1//x", Read, false},
		{"artifacts/e1/x", Read, false},
		{"logs/e1/x", 0, false},
	}
	for _, tc := range cases {
		if got := c.Allows(tc.key, tc.perm); got != tc.want {
			t.Errorf("Allows(%q, %s) = %v, want %v", tc.key, tc.perm, got, tc.want)
		}
	}
	for prefix, want := range map[string]bool{
		"logs/e1/": true, "logs/e1/exec": true, "cache/o/r/": true,
		"logs/e1": false, "logs/": false, "": false, "logs/e1/../": false, "logs/e2/": false,
	} {
		if got := c.AllowsList(prefix); got != want {
			t.Errorf("AllowsList(%q) = %v, want %v", prefix, got, want)
		}
	}
}

// FuzzParseAccessKeyID throws arbitrary strings at the parser: it must not panic, and
// anything it accepts must be the canonical encoding of what it returned.
func FuzzParseAccessKeyID(f *testing.F) {
	id, _ := mustMint(f, "exec-1", ExecGrants("exec-1", "o/r", true), time.Hour)
	f.Add(id)
	f.Add(KeyIDPrefix)
	f.Add(KeyIDPrefix + "AAAA")
	f.Add("AKIAIOSFODNN7EXAMPLE")
	raw, _ := base64.RawURLEncoding.DecodeString(id[len(KeyIDPrefix):])
	f.Add(KeyIDPrefix + base64.RawURLEncoding.EncodeToString(raw[:len(raw)-3]))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if _, _, verr := Verify(testRoot, s, t0); verr == nil && err != nil {
			t.Fatalf("Verify accepted what Parse rejects: %v", err)
		}
		if err != nil {
			return
		}
		payload, _, _ := split(s)
		if !bytes.Equal(c.encode(), payload) {
			t.Fatalf("non-canonical payload accepted: %x re-encodes as %x", payload, c.encode())
		}
		if c.validate() != nil {
			t.Fatalf("invalid claims accepted: %+v", c)
		}
	})
}

// FuzzAllowsStaysInside checks the property the store relies on: any key a credential
// allows starts with one of its prefixes and is unchanged by path cleaning, so no
// normalisation downstream can move it outside the grant.
func FuzzAllowsStaysInside(f *testing.F) {
	for _, k := range []string{"logs/e1/x", "logs/e1/../e2/x", "logs/e1/%2e%2e", "logs/e1//x", "logs/e1/./x", "logs/e1/\\..\\x"} {
		f.Add(k)
	}
	c := Claims{Exec: "e1", Grants: []Grant{{"logs/e1/", ReadWrite}}}
	f.Fuzz(func(t *testing.T, key string) {
		if !c.Allows(key, Read) {
			return
		}
		if !strings.HasPrefix(key, "logs/e1/") {
			t.Fatalf("%q allowed outside the grant", key)
		}
		if path.Clean("/"+key) != "/"+key {
			t.Fatalf("%q allowed but path.Clean changes it to %q", key, path.Clean("/"+key))
		}
	})
}
