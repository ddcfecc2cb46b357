package local_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/internal/ci"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// artifactDir is where the browser tests leave their screenshots: $FLARE_TEST_ARTIFACTS
// when set (CI keeps it), else the test's temp dir.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("FLARE_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// screenshot saves the whole page, or (full false) what the window shows.
func screenshot(t *testing.T, p *rod.Page, name string, full bool) {
	t.Helper()
	b, err := p.Screenshot(full, &proto.PageCaptureScreenshot{Format: proto.PageCaptureScreenshotFormatPng})
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(b))
}

// TestViewerInChromium opens the viewer of a running execution in Debian's chromium:
// a line shows up while the command is blocked, the hostile line creates no element,
// and the page goes on to the end once the command is released; then the dashboard.
func TestViewerInChromium(t *testing.T) {
	bin := ci.Tool(t, "chromium")
	u, err := launcher.New().Bin(bin).Headless(true).NoSandbox(true).Leakless(false).Set("disable-gpu").Launch()
	if err != nil {
		t.Fatalf("launch chromium: %v", err)
	}
	browser := rod.New().ControlURL(u)
	if err := browser.Connect(); err != nil {
		t.Fatal(err)
	}
	defer browser.Close()

	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 2)
	marker := filepath.Join(t.TempDir(), "release")
	cmd := fmt.Sprintf("%s; echo first-line; while [ ! -f %s ]; do sleep 0.1; done; echo second-line", hostileCommand, marker)
	id := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], cmd, nil), "").body["executionId"].(string)

	page, err := browser.Page(proto.TargetCreateTarget{URL: viewerURL(st, id, token(st, id))})
	if err != nil {
		t.Fatal(err)
	}
	p := page.Timeout(60 * time.Second)
	if _, err := p.ElementR(".l", "first-line"); err != nil {
		t.Fatalf("first line never shown: %v", err)
	}
	if s := executionView(t, st, id).Execution.Status; s != "running" {
		t.Fatalf("status %s when the first line showed: not live", s)
	}
	hostile, err := p.ElementR(".l.out", "onerror")
	if err != nil {
		t.Fatal(err)
	}
	if text := hostile.MustText(); !strings.Contains(text, "<img src=x onerror=alert(1)> red click") {
		t.Fatalf("hostile line shows as %q", text)
	}
	if imgs, _ := page.Elements("img"); len(imgs) != 0 {
		t.Fatalf("a log line created %d <img> element(s)", len(imgs))
	}
	if links, _ := page.Elements(".l a"); len(links) != 0 {
		t.Fatalf("a log line created %d <a> element(s)", len(links))
	}
	if red, err := hostile.Element("span.term-fg31"); err != nil || red.MustText() != "red" {
		t.Fatalf("ANSI red not rendered as a coloured span: %v", err)
	}
	screenshot(t, page, "viewer-running.png", true)

	os.WriteFile(marker, nil, 0o644)
	if _, err := p.Element("body[data-ended]"); err != nil {
		t.Fatalf("the page never saw the end: %v", err)
	}
	if _, err := p.ElementR(".l", "second-line"); err != nil {
		t.Fatal(err)
	}
	if status := page.MustElement("#status").MustText(); status != "success" {
		t.Fatalf("status shown %q", status)
	}
	screenshot(t, page, "viewer-done.png", true)

	dash, err := browser.Page(proto.TargetCreateTarget{})
	if err != nil {
		t.Fatal(err)
	}
	restore, err := dash.SetExtraHeaders([]string{"Authorization", "Bearer " + st.Secrets.AdminToken})
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	if err := dash.Navigate(st.URL + "/"); err != nil {
		t.Fatal(err)
	}
	row, err := dash.Timeout(30*time.Second).ElementR("#executions a", id)
	if err != nil {
		t.Fatalf("execution not on the dashboard: %v", err)
	}
	screenshot(t, dash, "dashboard.png", true)
	if err := row.Click(proto.InputMouseButtonLeft, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := dash.Timeout(30*time.Second).ElementR(".l", "second-line"); err != nil {
		t.Fatalf("the dashboard row did not open the viewer: %v", err)
	}

	// A fan-out's viewer lists its children as they are spawned, each opening its own.
	fan := dispatch(t, st, "matrix-fanout", runBody("matrix-fanout", repo, shas[0],
		map[string]any{"repo": repo, "sha": shas[0], "command": `echo "hello from $SHARD_INDEX"`, "shards": 2}), "").body["executionId"].(string)
	fp, err := browser.Page(proto.TargetCreateTarget{URL: viewerURL(st, fan, token(st, fan))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fp.Timeout(60*time.Second).ElementR("#children a", "shard-2"); err != nil {
		t.Fatalf("children not listed: %v", err)
	}
	if _, err := fp.Timeout(60 * time.Second).Element("body[data-ended]"); err != nil {
		t.Fatal(err)
	}
	screenshot(t, fp, "viewer-fanout.png", true)
	// the list is redrawn with each state: take the link from the last one
	child, err := fp.Timeout(10*time.Second).ElementR("#children a", "shard-2")
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Click(proto.InputMouseButtonLeft, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := fp.Timeout(30*time.Second).ElementR(".l", "hello from 2"); err != nil {
		t.Fatalf("the child link did not open the child's viewer: %v", err)
	}

	// A chatty run: the page keeps the last 20,000 lines of a file and says how many
	// earlier ones it does not show (fails without the cap: all 30,002 are kept).
	chatty := dispatch(t, st, "offload-test", offloadBody(repo, shas[1], "seq 1 30000", nil), "").body["executionId"].(string)
	waitDone(t, st, chatty, 60*time.Second)
	opened := time.Now()
	cp, err := browser.Page(proto.TargetCreateTarget{URL: viewerURL(st, chatty, token(st, chatty))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Timeout(120 * time.Second).Element("body[data-ended]"); err != nil {
		t.Fatal(err)
	}
	t.Logf("a 30,002-line log: page open → every line read in %s", time.Since(opened).Round(time.Millisecond))
	shown := cp.MustEval(`() => { const f = document.querySelector("details.file"), l = f.querySelector(".lines");
		return {n: l.childElementCount, first: l.firstElementChild.textContent, beforeLast: l.lastElementChild.previousElementSibling.textContent,
			note: f.querySelector(".dropped").hidden ? "" : f.querySelector(".dropped").textContent} }`)
	if n, first, beforeLast, note := shown.Get("n").Int(), shown.Get("first").Str(), shown.Get("beforeLast").Str(), shown.Get("note").Str(); n != 20000 || first != "10002" || beforeLast != "30000" ||
		!strings.HasPrefix(note, "10002 earlier lines are not shown here") {
		t.Fatalf("a 30,002-line log shows %d lines from %q to %q, note %q", n, first, beforeLast, note)
	}
	cp.MustEval(`() => window.scrollTo(0, 0)`)
	screenshot(t, cp, "viewer-chatty.png", false) // the top: the full page is 12 MB
}
