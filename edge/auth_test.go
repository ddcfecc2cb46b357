package edge

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

func TestVerifySignatureAcceptsOnlyTheExactMAC(t *testing.T) {
	body := []byte(`{"run":"offload-test"}`)
	good := SignatureHeader("s3cret", body)
	cases := map[string]bool{
		good:                                  true,
		"sha256=" + strings.ToUpper(good[7:]): true,  // upper-case hex is accepted
		good[7:]:                              false, // no prefix
		"sha1=" + good[7:]:                    false,
		good[:len(good)-1]:                    false, // odd hex
		good[:len(good)-2]:                    false, // 31 bytes
		"sha256=" + strings.Repeat("zz", 32):  false, // not hex
		"":                                    false,
		SignatureHeader("other", body):        false,
	}
	for h, want := range cases {
		if got := VerifySignature("s3cret", body, h); got != want {
			t.Errorf("VerifySignature(%q) = %v, want %v", h, got, want)
		}
	}
	if VerifySignature("s3cret", append(body, ' '), good) {
		t.Error("a mutated body verified")
	}
}

func TestFingerprintIsTheFirstEightHexOfSHA256(t *testing.T) {
	// sha256("abc") = ba7816bf...
	if got := Fingerprint("abc"); got != "ba7816bf" {
		t.Fatalf("Fingerprint(abc) = %s", got)
	}
}

func TestAgentTokensAreScopedAndExpire(t *testing.T) {
	cfg := Config{HMACSecret: "k"}
	now := time.Unix(1_800_000_000, 0)
	tok := MintAgentToken(cfg, AgentClaims{Exec: "e1", Attempt: 2, Expires: now.Add(time.Hour).Unix()})
	if c, err := VerifyAgentToken(cfg, tok, "e1", now); err != nil || c.Attempt != 2 {
		t.Fatalf("valid token: %+v %v", c, err)
	}
	if _, err := VerifyAgentToken(cfg, tok, "e2", now); err == nil {
		t.Error("token accepted for another execution")
	}
	if _, err := VerifyAgentToken(cfg, tok, "e1", now.Add(2*time.Hour)); err == nil {
		t.Error("expired token accepted")
	}
	if _, err := VerifyAgentToken(Config{HMACSecret: "other"}, tok, "e1", now); err == nil {
		t.Error("token accepted under another secret")
	}
	if _, err := VerifyAgentToken(cfg, tok[:len(tok)-2]+"AA", "e1", now); err == nil {
		t.Error("tampered token accepted")
	}
}

func TestLogTokenIsStablePerExecution(t *testing.T) {
	cfg := Config{HMACSecret: "k"}
	a, b := LogToken(cfg, "x:1"), LogToken(cfg, "x:2")
	if len(a) != 22 || a == b || a != LogToken(cfg, "x:1") {
		t.Fatalf("tokens %q %q", a, b)
	}
	if LogToken(Config{HMACSecret: "k", LogLinkSecret: "extra"}, "x:1") == a {
		t.Fatal("LOG_LINK_SECRET does not change the token")
	}
}

func TestSandboxIDIsPreviewSafe(t *testing.T) {
	cases := map[string]string{
		"offload-test:acme_app:1a2b3c4d5e6f": "offload-test-acme-app-1a2b3c4d5e6f",
		"A__B":                               "a-b",
	}
	for in, want := range cases {
		if got := SandboxID(in); got != want {
			t.Errorf("SandboxID(%q) = %q, want %q", in, got, want)
		}
	}
	long := SandboxID("matrix-fanout:some-organisation_a-very-long-repository-name:1a2b3c4d5e6f")
	if len(long) > 63 || strings.Trim(long, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		t.Fatalf("long id %q", long)
	}
	if _, err := hex.DecodeString(long[len(long)-8:]); err != nil {
		t.Fatalf("long id %q does not end in the digest", long)
	}
	if SandboxID("matrix-fanout:some-organisation_a-very-long-repository-name:1a2b3c4d5e6f") != long {
		t.Fatal("not deterministic")
	}
}

func TestQueuedTextMatchesTheContract(t *testing.T) {
	d := time.Date(2026, 11, 28, 14, 5, 0, 0, time.UTC)
	if got := QueuedText(actors.QueueInfo{Position: 1, Busy: 1, Cap: 1, Deadline: d}); got != "Queued — waiting for a sandbox slot behind 1 run (1/1 in use); times out 14:05 UTC" {
		t.Fatal(got)
	}
	if got := QueuedText(actors.QueueInfo{Position: 3, Busy: 16, Cap: 16, Deadline: d}); got != "Queued — waiting for a sandbox slot behind 3 runs (16/16 in use); times out 14:05 UTC" {
		t.Fatal(got)
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "sha256=00")
	f.Add([]byte(``), SignatureHeader("k", nil))
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		ok := VerifySignature("k", body, header)
		if ok && !strings.EqualFold(header, SignatureHeader("k", body)) {
			t.Fatalf("accepted %q for %q", header, body)
		}
	})
}
