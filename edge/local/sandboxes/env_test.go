package sandboxes

import (
	"slices"
	"testing"
)

// TestAgentEnvKeepsWhatTheAgentPasses: the local stack used to keep a list of its own
// that dropped SSL_CERT_FILE, SSL_CERT_DIR and LC_CTYPE before the agent could pass
// them to commands; it fails if agentEnv filters by anything but agentapi.PassEnv.
func TestAgentEnvKeepsWhatTheAgentPasses(t *testing.T) {
	host := map[string]string{
		"PATH": "/bin", "SSL_CERT_FILE": "/ca.pem", "SSL_CERT_DIR": "/certs", "LC_CTYPE": "C.UTF-8",
		"TMPDIR": "/scratch", "HOME": "/root", "HMAC_SECRET": "s3cr3t",
	}
	got := agentEnv(func(k string) (string, bool) { v, ok := host[k]; return v, ok }, "/ws/sb", "sb")
	want := []string{"FLARE_SANDBOX=sb", "HOME=/ws/sb", "LC_CTYPE=C.UTF-8", "PATH=/bin",
		"SSL_CERT_DIR=/certs", "SSL_CERT_FILE=/ca.pem", "TMPDIR=/scratch"}
	if !slices.Equal(got, want) {
		t.Fatalf("agentEnv = %q\nwant %q", got, want)
	}
}

// TestFreshSandboxSeesNoHostCache: with Procs.Fresh an agent's environment names none
// of the host's toolchain caches and the isolated sandbox binds none of them (not even
// Go's default module cache), while the toolchains stay (PATH, RUSTUP_HOME). Fails if
// freshEnv passes a cache variable through, or toolchains binds ~/go/pkg/mod for it.
func TestFreshSandboxSeesNoHostCache(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	host := map[string]string{
		"PATH": "/opt/go/bin", "GOCACHE": "/host/gocache", "GOMODCACHE": "/host/gomod", "GOPATH": "/host/go",
		"npm_config_cache": "/host/npm", "CARGO_HOME": "/host/cargo", "RUSTUP_HOME": "/host/rustup", "GOPROXY": "off",
	}
	lookup := freshEnv(func(k string) (string, bool) { v, ok := host[k]; return v, ok })
	env := agentEnv(lookup, "/ws/sb", "sb")
	for _, kv := range env {
		for _, k := range []string{"GOCACHE=", "GOMODCACHE=", "GOPATH=", "npm_config_cache=", "CARGO_HOME=", freshMarker} {
			if len(kv) >= len(k) && kv[:len(k)] == k {
				t.Fatalf("fresh agent env has %s: %q", kv, env)
			}
		}
	}
	for _, want := range []string{"PATH=/opt/go/bin", "RUSTUP_HOME=/host/rustup", "GOPROXY=off"} {
		if !slices.Contains(env, want) {
			t.Fatalf("fresh agent env lost %s: %q", want, env)
		}
	}
	delete(host, "GOMODCACHE")
	for _, p := range toolchains("/opt/flare", "/data", lookup) {
		if p == "/host/gomod" || p == "/host/cargo" || p == home+"/go/pkg/mod" {
			t.Fatalf("fresh sandbox binds the host cache %s", p)
		}
	}
}
