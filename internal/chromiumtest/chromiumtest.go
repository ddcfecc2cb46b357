// Package chromiumtest finds Debian's chromium for tests that need a real browser.
package chromiumtest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/browser"
	"github.com/flare-dispatch/flare-dispatch/dsl"
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

// Endpoint launches a chromium of the test's own (a plain session, as a run's
// browser sandbox or Browser Rendering would give) and returns its CDP websocket
// URL; the browser is closed when the test ends.
func Endpoint(t testing.TB) string {
	t.Helper()
	b := browser.New(browser.Config{Bin: Bin(t), TempDir: t.TempDir()})
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := b.NewCDPSession(ctx, dsl.SessionOptions{})
	if err != nil {
		t.Fatalf("chromium session: %v", err)
	}
	return s.WSEndpoint()
}
