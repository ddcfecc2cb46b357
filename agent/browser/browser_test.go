package browser_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/agent/browser"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
)

// A page that logs, throws, loads a missing image and changes when its button is
// clicked.
const appPage = `<!doctype html><html><head><title>Fixture app</title>
<style>body{font-family:sans-serif}</style></head><body>
<h1 id="h">Hello fixture</h1>
<input id="name" placeholder="Your name">
<button id="go" onclick="document.getElementById('h').textContent='Clicked ' + document.getElementById('name').value">Go</button>
<img src="/missing.png">
<script>console.log('app ready', 42); console.error('something bad'); setTimeout(() => { throw new Error('boom later') }, 0);</script>
</body></html>`

func appServer(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(appPage))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func readNDJSON(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

func TestSessionDrivesCapturesAndRecordsARealChromium(t *testing.T) {
	bin := chromiumtest.Bin(t)
	srv := appServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b := browser.New(browser.Config{Bin: bin, TempDir: t.TempDir()})
	defer b.Close()

	t0 := time.Now()
	s, err := b.NewCDPSession(ctx, dsl.SessionOptions{TargetURL: srv.URL + "/", Record: true, Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.WSEndpoint(), "ws://127.0.0.1:") {
		t.Fatalf("ws endpoint %q", s.WSEndpoint())
	}
	t.Logf("session open %s", time.Since(t0))
	pg := s.Page()
	snap, err := pg.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Title != "Fixture app" || !strings.Contains(snap.Text, "Hello fixture") {
		t.Fatalf("snapshot %+v", snap)
	}
	var button, input string
	for _, e := range snap.Elements {
		switch {
		case e.Tag == "button" && e.Name == "Go":
			button = e.Ref
		case e.Tag == "input" && e.Name == "Your name":
			input = e.Ref
		}
	}
	if button == "" || input == "" {
		t.Fatalf("elements %+v", snap.Elements)
	}
	if err := pg.Type(ctx, input, "Ada"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Click(ctx, button); err != nil {
		t.Fatal(err)
	}
	snap, _ = pg.Snapshot(ctx)
	if !strings.Contains(snap.Text, "Clicked Ada") {
		t.Fatalf("after click: %q", snap.Text)
	}
	if err := pg.Click(ctx, "#nope"); err == nil {
		t.Fatal("clicking a missing element succeeded")
	}

	// A second CDP client (as a test command given CDP_WS_URL would be) opens a page
	// of its own: the session captures it too.
	other := rod.New().ControlURL(s.WSEndpoint()).Context(ctx)
	if err := other.Connect(); err != nil {
		t.Fatal(err)
	}
	op, err := other.Page(proto.TargetCreateTarget{URL: "about:blank"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Eval(`() => console.log('from the test client')`); err != nil {
		t.Fatal(err)
	}

	t.Logf("actions done %s", time.Since(t0))
	dir := t.TempDir()
	var c dsl.Capture
	// The second page's console line arrives asynchronously: capture until it is there
	// (each Capture is a complete, consistent write; no sleeping).
	for range 50 {
		if c, err = s.Capture(ctx, dir); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(must(os.ReadFile(filepath.Join(dir, "console.ndjson"))), []byte("from the test client")) {
			break
		}
		op.Eval(`() => true`)
	}
	t.Logf("captured %s", time.Since(t0))
	if c.Pages != 2 || c.Screenshots != 2 || c.ConsoleErrors < 2 || c.FailedLoads < 1 || c.TraceBytes == 0 {
		t.Fatalf("capture %+v", c)
	}
	console := readNDJSON(t, filepath.Join(dir, "console.ndjson"))
	var sawLog, sawExc bool
	for _, l := range console {
		sawLog = sawLog || (l["level"] == "log" && l["text"] == "app ready 42")
		sawExc = sawExc || (l["level"] == "exception" && strings.Contains(l["text"].(string), "boom later"))
	}
	if !sawLog || !sawExc {
		t.Fatalf("console %v", console)
	}
	network := readNDJSON(t, filepath.Join(dir, "network.ndjson"))
	var saw404 bool
	for _, n := range network {
		saw404 = saw404 || (strings.HasSuffix(n["url"].(string), "/missing.png") && n["status"] == float64(404))
	}
	if !saw404 {
		t.Fatalf("network %v", network)
	}
	png := must(os.ReadFile(filepath.Join(dir, "screenshots", "page-1.png")))
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatal("page-1.png is not a PNG")
	}
	var trace any
	if err := json.Unmarshal(must(os.ReadFile(filepath.Join(dir, "trace.json"))), &trace); err != nil {
		t.Fatalf("trace.json: %v", err)
	}

	events, err := s.Recording(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var meta, fulls int
	var last string
	for _, e := range events {
		var ev struct {
			Type int             `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		json.Unmarshal(e, &ev)
		switch ev.Type {
		case 4:
			meta++
		case 2:
			fulls++
			last = string(ev.Data)
		}
	}
	if meta < 1 || fulls < 2 || !strings.Contains(last, "Clicked Ada") || strings.Contains(last, "console.log") {
		t.Fatalf("recording: %d meta, %d full snapshots; last %s", meta, fulls, last)
	}

	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The browser is gone with its session.
	if err := rod.New().ControlURL(s.WSEndpoint()).Context(ctx).Connect(); err == nil {
		t.Fatal("the browser still answers after Close")
	}
}

func TestRemoteSessionAndUnavailableBrowser(t *testing.T) {
	bin := chromiumtest.Bin(t)
	srv := appServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	host := browser.New(browser.Config{Bin: bin, TempDir: t.TempDir()})
	defer host.Close()
	hs, err := host.NewCDPSession(ctx, dsl.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A remote session connects to an existing browser's websocket and launches nothing.
	remote := browser.New(browser.Config{Bin: "/nonexistent/chromium", RemoteURL: hs.WSEndpoint()})
	rs, err := remote.NewCDPSession(ctx, dsl.SessionOptions{TargetURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if rs.WSEndpoint() != hs.WSEndpoint() {
		t.Fatal("remote session has another endpoint")
	}
	if snap, err := rs.Page().Snapshot(ctx); err != nil || snap.Title != "Fixture app" {
		t.Fatalf("%+v %v", snap, err)
	}
	// A second remote session on the same browser sees none of the first's pages, and
	// closing it leaves the browser to the others.
	rs2, err := remote.NewCDPSession(ctx, dsl.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := rs2.Capture(ctx, t.TempDir())
	if err != nil || c2.Pages != 1 || c2.Requests != 0 {
		t.Fatalf("second session captured %+v %v", c2, err)
	}
	rs2.Close(ctx)
	if snap, err := rs.Page().Snapshot(ctx); err != nil || snap.Title != "Fixture app" {
		t.Fatalf("the first session's page after the second closed: %+v %v", snap, err)
	}
	remote.Close()
	if _, err := hs.Page().Snapshot(ctx); err != nil {
		t.Fatalf("the host browser died with its remote sessions: %v", err)
	}

	missing := browser.New(browser.Config{Bin: filepath.Join(t.TempDir(), "chromium")})
	_, err = missing.NewCDPSession(ctx, dsl.SessionOptions{})
	var bu *dsl.BrowserUnavailable
	if !errors.As(err, &bu) || bu.Reason != "transient" || !strings.Contains(bu.Cause, "apt-get install -y chromium") {
		t.Fatalf("missing chromium: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
