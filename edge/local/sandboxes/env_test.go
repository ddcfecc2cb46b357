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
