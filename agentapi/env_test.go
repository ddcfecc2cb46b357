package agentapi

import (
	"slices"
	"testing"
)

// TestPassEnvIsPinned pins the allow-list: adding a name lets more of a host's
// environment into every sandbox (local agents and the commands they run), so it is a
// reviewed change, not a side effect.
func TestPassEnvIsPinned(t *testing.T) {
	want := []string{
		"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
		"SSL_CERT_FILE", "SSL_CERT_DIR",
		"GOPATH", "GOMODCACHE", "GOCACHE", "GOFLAGS", "GOPROXY",
		"npm_config_cache", "CARGO_HOME", "RUSTUP_HOME",
		"CHROME_PATH",
	}
	if !slices.Equal(PassEnv, want) {
		t.Fatalf("PassEnv = %q\nwant %q", PassEnv, want)
	}
}

func TestInheritEnvPassesOnlyTheAllowList(t *testing.T) {
	host := map[string]string{
		"PATH": "/bin", "SSL_CERT_FILE": "/ca.pem", "LC_CTYPE": "C.UTF-8",
		"HMAC_SECRET": "s3cr3t", "FLARE_ADMIN_SECRET": "x", "EMPTY_BUT_SET": "",
	}
	got := InheritEnv(func(k string) (string, bool) { v, ok := host[k]; return v, ok })
	want := map[string]string{"PATH": "/bin", "SSL_CERT_FILE": "/ca.pem", "LC_CTYPE": "C.UTF-8"}
	if len(got) != len(want) {
		t.Fatalf("InheritEnv = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
