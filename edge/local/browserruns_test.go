package local_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/browserruns"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// The browser runs on the whole local stack: the edge spawns playwright-e2e's shards
// as child executions on agent processes, each shard runs the fixture's real
// Playwright suite on Debian's chromium, and the check-run that reaches GitHub is red,
// links both shards' reports, and carries the deliberately failing test as an
// annotation on its file and line.
func TestPlaywrightE2EOnTheLocalStackAnnotatesTheCheckRun(t *testing.T) {
	chromiumtest.Bin(t)
	browserruns.NeedNode(t)
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation("acme/app")
	repo, sha := gittest.RepoWith(t, browserruns.Files(t, "app", "pwsuite"))
	gh.AddCommitSHA("acme/app", sha)
	base := browserruns.StartApp(t, repo)
	st := startStack(t, env{"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_APP_PRIVATE_KEY": string(app.PrivateKeyPEM), "GITHUB_API_URL": gh.URL()})
	body := map[string]any{"run": "playwright-e2e", "github": map[string]any{"repo": "acme/app", "sha": sha, "installation_id": inst},
		"inputs": map[string]any{"repo": repo, "sha": sha, "baseURL": base, "shards": 2}}
	r := dispatch(t, st, "playwright-e2e", body, "")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	v := waitDone(t, st, id, 6*time.Minute)
	if v.Execution.Status != "failure" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	runs := gh.CheckRuns("acme/app")
	if len(runs) != 1 {
		t.Fatalf("%d check-runs, want the parent's only", len(runs))
	}
	cr := runs[0]
	for _, want := range []string{"3 passed, 1 failed", "/v1/artifacts/" + id + ":shard-1/playwright-report-1/", "/v1/artifacts/" + id + ":shard-2/playwright-report-2/"} {
		if !strings.Contains(cr.Summary, want) {
			t.Fatalf("check-run summary lacks %q:\n%s", want, cr.Summary)
		}
	}
	if len(cr.Annotations) != 1 || cr.Annotations[0].Path != "tests/checkout.spec.js" || cr.Annotations[0].StartLine != 9 || cr.Annotations[0].Level != "failure" {
		t.Fatalf("annotations %+v", cr.Annotations)
	}
	for i := 1; i <= 2; i++ {
		u := fmt.Sprintf("%s/v1/artifacts/%s:shard-%d/playwright-report-%d/", st.URL, id, i, i)
		if g := get(t, u); g.status != 200 || !strings.Contains(string(g.raw), "Playwright Test Report") {
			t.Fatalf("report %d: %d", i, g.status)
		}
	}
}

// With BROWSER_MODE=remote, a browser run's sessions go through the edge's
// /v1/browser/cdp to the configured browser: cdp-acceptance boots the fixture app in
// its sandbox and its acceptance script drives that browser through the edge with the
// CDP-scoped token it got in CDP_WS_URL.
func TestCDPAcceptanceThroughTheEdgesPassThrough(t *testing.T) {
	browserruns.NeedNode(t)
	endpoint := chromiumtest.Endpoint(t)
	repo, sha := gittest.RepoWith(t, browserruns.Files(t, "app"))
	st := startStack(t, env{"BROWSER_MODE": "remote", "BROWSER_CDP_URL": endpoint})
	r := dispatch(t, st, "cdp-acceptance", runBody("cdp-acceptance", repo, sha, map[string]any{
		"repo": repo, "sha": sha, "appBootCommand": "PORT=4327 node server.js", "appPort": 4327,
		"testCommand": `case "$CDP_WS_URL" in */v1/browser/cdp?token=*) ;; *) echo "not through the edge: $CDP_WS_URL"; exit 9;; esac; node --experimental-websocket accept.js`,
	}), "")
	if r.status != 202 {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	v := waitDone(t, st, id, 4*time.Minute)
	if v.Execution.Status != "failure" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	for _, want := range []string{"**Acceptance: failed** (exit code 1)", "PASS the shop page has its title", "FAIL the shop offers free shipping",
		"/v1/artifacts/" + id + "/acceptance-report/"} {
		if !strings.Contains(v.Check.Summary, want) {
			t.Fatalf("check summary lacks %q:\n%s", want, v.Check.Summary)
		}
	}
}
