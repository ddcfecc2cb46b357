package browserruns_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkPlaywrightSuite compares the fixture's Playwright suite run directly
// (npx playwright test in a checkout whose node_modules are installed) with the same
// suite through playwright-e2e in 2 shards (each shard a sandbox of its own: checkout,
// npm install restored from the cache after the first run, the shard, the report
// uploaded; then the merge). Both on this machine, against the same app.
//
//	go test -run XXX -bench PlaywrightSuite -benchtime 3x ./internal/browserruns
func BenchmarkPlaywrightSuite(b *testing.B) {
	needNode(b)
	w := newWorld(b)
	repo, sha := fixtureRepo(b, "app", "pwsuite")
	base := startApp(b, repo)
	ctx := context.Background()

	b.Run("direct", func(b *testing.B) {
		dir := b.TempDir()
		run := func(name string, args ...string) {
			cmd := exec.Command(name, args...)
			cmd.Dir = dir
			cmd.Env = append(cmd.Environ(), "BASE_URL="+base, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
			out, err := cmd.CombinedOutput()
			if _, ok := err.(*exec.ExitError); err != nil && !ok {
				b.Fatalf("%s: %v\n%s", name, err, out)
			}
		}
		run("git", "clone", "-q", repo, ".")
		run("npm", "ci", "--no-audit", "--no-fund")
		for b.Loop() {
			run("npx", "--no-install", "playwright", "test", "--reporter=json") // exits 1: one test fails on purpose
		}
	})
	b.Run("playwright-e2e-2-shards", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			start := time.Now()
			_, err := runPlaywrightE2E(b, ctx, w, fmt.Sprintf("pw-bench-%d", i), `{"repo":"`+repo+`","sha":"`+sha+`","baseURL":"`+base+`","shards":2}`)
			if err == nil {
				b.Fatal("the suite has a failing test; the run should be red")
			}
			b.Logf("iteration %d: %s", i, time.Since(start))
		}
	})
}
