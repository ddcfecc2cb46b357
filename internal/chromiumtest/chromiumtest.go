// Package chromiumtest finds Debian's chromium for tests that need a real browser.
package chromiumtest

import (
	"os"
	"os/exec"
	"testing"
)

// Bin returns the chromium binary ($CHROME_PATH, else /usr/bin/chromium). Without it
// the test is skipped, or fails under CI=true (.ci/run installs it).
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("CHROME_PATH")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required under CI (apt-get install -y chromium): %v", err)
		}
		t.Skipf("no chromium at %s (apt-get install -y chromium)", bin)
	}
	return bin
}
