// Package ci says whether tests run in CI, where every test must run: a test that
// would skip on a developer's machine (a tool is missing, -short) fails instead, so a
// green CI never hides a test that did not run.
package ci

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the CI environment variable is set to anything but "", "false"
// or "0" (CI services set CI=true; .ci/run runs under it).
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Skip skips the test outside CI and fails it in CI.
func Skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("CI is set, so not skipping: "+format, args...)
		return
	}
	tb.Skipf(format, args...)
}

// SkipShort skips the test under -short, which CI does not pass (and fails it there if
// someone does).
func SkipShort(tb testing.TB, why string) {
	tb.Helper()
	if testing.Short() {
		Skip(tb, "-short: %s", why)
	}
}

// Tool returns the path of the named program; when it is missing the test skips, or
// fails in CI (.ci/run installs every tool the tests use).
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(tb, "%s is not installed", name)
	}
	return p
}
