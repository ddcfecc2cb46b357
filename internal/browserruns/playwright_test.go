package browserruns_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// runPlaywrightE2E runs playwright-e2e as the edge would: the parent spawns its shard
// children and suspends; each child runs (concurrently, each in a sandbox of its own,
// with its own checkout and cached npm install) and ends; the parent resumes and
// merges them.
func runPlaywrightE2E(t testing.TB, ctx context.Context, w *world, exec, inputs string) (json.RawMessage, error) {
	t.Helper()
	norm, err := runs.PlaywrightE2E.DecodeInputs(json.RawMessage(inputs))
	if err != nil {
		t.Fatal(err)
	}
	parent := w.execution(ctx, exec, "playwright-e2e", "local/app")
	kids := &dsltest.Children{Parent: exec}
	parent.c.Children, parent.c.Suspender = kids, &dsltest.Suspender{}
	if _, err := runs.PlaywrightE2E.Execute(parent.c, norm); !dsl.IsSuspended(err) {
		t.Fatalf("the parent did not suspend for its shards: %v", err)
	}
	var wg sync.WaitGroup
	for id, in := range kids.Inputs {
		key := strings.TrimPrefix(id, exec+":")
		wg.Go(func() {
			child := w.execution(ctx, id, "playwright-e2e", "local/app")
			start := time.Now()
			out, err := runs.PlaywrightE2E.Execute(child.c, in)
			if err != nil {
				f := dsl.AsFailure(err)
				kids.Finish(key, "failure", nil, &f, time.Since(start))
				return
			}
			kids.Finish(key, "success", out, nil, time.Since(start))
		})
	}
	wg.Wait()
	// The resumed attempt: a new agent attempt over the same journal.
	again := w.execution(ctx, exec, "playwright-e2e", "local/app")
	again.c.Journal, again.c.Children, again.c.Suspender, again.c.Attempt = parent.journal, kids, &dsltest.Suspender{}, 2
	return runs.PlaywrightE2E.Execute(again.c, norm)
}

// playwright-e2e runs the fixture's real Playwright suite (@playwright/test from npm,
// on Debian's chromium) in 2 shards: both reports are linked and served by the edge,
// the deliberately failing test is a failure annotation, and the check is red.
func TestPlaywrightE2EShardsMergeReportsAndAnnotateFailures(t *testing.T) {
	needNode(t)
	w := newWorld(t)
	repo, sha := fixtureRepo(t, "app", "pwsuite")
	base := startApp(t, repo)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	raw, err := runPlaywrightE2E(t, ctx, w, "pw-e2e", `{"repo":"`+repo+`","sha":"`+sha+`","baseURL":"`+base+`","shards":2}`)
	var af *dsl.AcceptanceFailed
	if !errors.As(err, &af) {
		t.Fatalf("want AcceptanceFailed, got %v (%s)", err, raw)
	}
	out := decode[runs.PlaywrightE2EOutput](t, raw)
	if out.Shards != 2 || len(out.ShardResults) != 2 || out.Tests.Passed != 3 || out.Tests.Failed != 1 || out.Passed+out.Failed != 2 {
		t.Fatalf("merged %+v", out)
	}
	// The failing test, as an annotation on its file and line.
	if len(out.Findings) != 1 || out.Findings[0].Path != "tests/checkout.spec.js" || out.Findings[0].StartLine != 9 ||
		out.Findings[0].Level != dsl.LevelFailure || !strings.Contains(out.Findings[0].Title, "checkout offers free shipping") {
		t.Fatalf("findings %+v", out.Findings)
	}
	md := dsl.Markdown(af.Failure())
	for _, want := range []string{"**Playwright: 3 passed, 1 failed, 0 flaky, 0 skipped** in 2 shards", "checkout offers free shipping",
		"[playwright-report-1](" + w.origin + "/v1/artifacts/pw-e2e:shard-1/playwright-report-1/)",
		"[playwright-report-2](" + w.origin + "/v1/artifacts/pw-e2e:shard-2/playwright-report-2/)"} {
		if !strings.Contains(md, want) {
			t.Fatalf("check summary lacks %q:\n%s", want, md)
		}
	}
	for _, sh := range out.ShardResults {
		if st, body := fetch(t, sh.ReportURI); st != 200 || !strings.Contains(body, "Playwright Test Report") {
			t.Fatalf("shard %d report %s: %d", sh.Index, sh.ReportURI, st)
		}
	}
}

// playwright-demo runs a Playwright script and uploads what it recorded and its log.
func TestPlaywrightDemoUploadsTheBundleAndTheLog(t *testing.T) {
	needNode(t)
	w := newWorld(t)
	repo, sha := fixtureRepo(t, "app", "pwsuite")
	base := startApp(t, repo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	in := `{"repo":"` + repo + `","sha":"` + sha + `","command":"node demo.js","artifactPath":"demo-out","env":{"BASE_URL":"` + base + `"}}`
	norm, err := runs.PlaywrightDemo.DecodeInputs(json.RawMessage(in))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := runs.PlaywrightDemo.Execute(w.execution(ctx, "pw-demo", "playwright-demo", "local/app").c, norm)
	if err != nil {
		t.Fatal(err)
	}
	out := decode[runs.PlaywrightDemoOutput](t, raw)
	if st, body := fetch(t, out.BundleURI+"after-click.png"); st != 200 || !strings.HasPrefix(body, "\x89PNG") {
		t.Fatalf("bundle %s: %d", out.BundleURI, st)
	}
	if st, body := fetch(t, out.LogURI); st != 200 || !strings.Contains(body, "opened Fixture shop") || !strings.Contains(body, "count is 2") {
		t.Fatalf("log %d %q", st, body)
	}
	// The video: the script drove the run's screencasting browser over CDP_WS_URL.
	if !strings.HasSuffix(out.VideoURI, "/video/") || !strings.HasSuffix(out.GIFURI, "/video/video.gif") {
		t.Fatalf("video %q gif %q", out.VideoURI, out.GIFURI)
	}
	if st, body := fetch(t, out.GIFURI); st != 200 || !strings.HasPrefix(body, "GIF89a") {
		t.Fatalf("video.gif: %d %.10q", st, body)
	}
	if st, body := fetch(t, out.VideoURI); st != 200 || !strings.Contains(body, `id="frames"`) || !strings.Contains(body, "frames/00001.jpg") {
		t.Fatalf("player: %d %.300s", st, body)
	}
	if !strings.Contains(out.SummaryMd, "![the demo]("+out.GIFURI+")") {
		t.Fatalf("summary has no GIF:\n%s", out.SummaryMd)
	}

	// A failing script is red, its log still uploaded.
	in = strings.Replace(in, "node demo.js", "echo about to fail; exit 3", 1)
	norm, _ = runs.PlaywrightDemo.DecodeInputs(json.RawMessage(in))
	raw, err = runs.PlaywrightDemo.Execute(w.execution(ctx, "pd-red", "playwright-demo", "local/app").c, norm)
	var af *dsl.AcceptanceFailed
	if !errors.As(err, &af) || af.ExitCode != 3 {
		t.Fatalf("want AcceptanceFailed exit 3, got %v", err)
	}
	if st, body := fetch(t, decode[runs.PlaywrightDemoOutput](t, raw).LogURI); st != 200 || !strings.Contains(body, "about to fail") {
		t.Fatalf("red log %d %q", st, body)
	}
}
