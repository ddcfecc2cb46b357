package browser_test

import (
	"context"
	"encoding/json"
	"image/gif"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/cdp"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/agent/browser"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
)

// A page that repaints: a counter that ticks every 50 ms.
const tickingPage = `data:text/html,<title>ticking</title><h1 id="n">0</h1><script>let n=0;setInterval(()=>{document.getElementById('n').textContent=++n},50)</script>`

// A screencasting session records the pages a client of its CDP websocket opens (as
// playwright-demo's script does) as JPEG frames, and Capture writes them as a player,
// frames.json and an animated GIF; the player, opened in chromium, shows the frames.
func TestScreencastRecordsTheClientsPagesAsVideo(t *testing.T) {
	bin := chromiumtest.Bin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // chromium under -race on a loaded machine
	defer cancel()
	b := browser.New(browser.Config{Bin: bin, TempDir: t.TempDir()})
	defer b.Close()
	s, err := b.NewCDPSession(ctx, dsl.SessionOptions{Screencast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)

	// The run's own client opens a page, as a script with CDP_WS_URL does.
	ws := &cdp.WebSocket{}
	if err := ws.Connect(ctx, s.WSEndpoint(), nil); err != nil {
		t.Fatal(err)
	}
	client := rod.New().Client(cdp.New().Start(ws)).Context(ctx)
	if err := client.Connect(); err != nil {
		t.Fatal(err)
	}
	p, err := client.Page(proto.TargetCreateTarget{URL: tickingPage})
	if err != nil {
		t.Fatal(err)
	}
	p.MustWaitLoad()
	dir := t.TempDir()
	var c dsl.Capture
	for c.VideoFrames < 3 { // the counter repaints every 50 ms: frames keep coming
		if c, err = s.Capture(ctx, dir); err != nil || ctx.Err() != nil {
			t.Fatalf("capture: %+v %v %v", c, err, ctx.Err())
		}
	}
	var frames []struct {
		Page int    `json:"page"`
		MS   int64  `json:"ms"`
		File string `json:"file"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "video", "frames.json"))
	if err != nil || json.Unmarshal(raw, &frames) != nil || len(frames) != c.VideoFrames {
		t.Fatalf("frames.json: %d frames, %v: %.200s", len(frames), err, raw)
	}
	for i, f := range frames {
		if st, err := os.Stat(filepath.Join(dir, "video", f.File)); err != nil || st.Size() < 100 {
			t.Fatalf("frame %d %s: %v", i, f.File, err)
		}
		if i > 0 && f.MS < frames[i-1].MS {
			t.Fatalf("frame %d goes back in time: %d < %d", i, f.MS, frames[i-1].MS)
		}
	}
	gf, err := os.Open(filepath.Join(dir, "video", "video.gif"))
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	g, err := gif.DecodeAll(gf)
	if err != nil || len(g.Image) < 2 || g.Image[0].Bounds().Dx() > 640 {
		t.Fatalf("video.gif: %v, %d frames", err, len(g.Image))
	}

	// The player shows the frames, one after the other.
	player, err := client.Page(proto.TargetCreateTarget{URL: "file://" + filepath.Join(dir, "video", "index.html")})
	if err != nil {
		t.Fatal(err)
	}
	player.MustWaitLoad()
	seen := map[string]bool{}
	for len(seen) < 3 {
		src := player.MustEval(`() => document.getElementById('v').getAttribute('src') + ' ' + document.getElementById('v').naturalWidth`).String()
		if strings.HasSuffix(src, " 0") || strings.HasPrefix(src, "null") {
			continue // not decoded yet
		}
		seen[src] = true
		if ctx.Err() != nil {
			t.Fatalf("the player showed only %v", seen)
		}
	}
}
