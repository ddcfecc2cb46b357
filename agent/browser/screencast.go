package browser

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-rod/rod/lib/proto"
)

// The screencast (SessionOptions.Screencast): every watched page streams JPEG frames
// over CDP (Page.startScreencast; chromium sends one when the page repaints, each
// acknowledged), and Capture writes them as video/: the frames, frames.json with their
// times, index.html that plays them at their own pace, and video.gif, an animated GIF
// that plays anywhere (a check-run summary included). Playwright's own video
// recording needs its ffmpeg build, which is not downloaded (specs/runs.md); Go's
// standard library writes JPEG and GIF, so this needs nothing new.

// frame is one screencast frame.
type frame struct {
	Page int       `json:"page"`
	Time time.Time `json:"-"`
	MS   int64     `json:"ms"` // since the first frame
	File string    `json:"file"`
	jpeg []byte
}

// Bounds of a screencast: frames past them are dropped (the beginning is kept).
const (
	maxFrames     = 3000
	maxFrameBytes = 256 << 20
	gifMaxWidth   = 640
	gifMaxFrames  = 200
	gifMaxBytes   = 10 << 20
)

// startScreencast asks the page for frames.
func (s *session) startScreencast(w *watched) error {
	q := 70
	return proto.PageStartScreencast{Format: proto.PageStartScreencastFormatJpeg, Quality: &q, MaxWidth: gptr(1280), MaxHeight: gptr(800)}.Call(w.page)
}

func gptr(n int) *int { return &n }

func (s *session) onFrame(w *watched, e *proto.PageScreencastFrame) {
	// Unacknowledged, chromium stops sending: ack first, keep after.
	go func() { _ = proto.PageScreencastFrameAck{SessionID: e.SessionID}.Call(w.page) }()
	at := time.Now()
	if e.Metadata != nil && e.Metadata.Timestamp != 0 {
		at = e.Metadata.Timestamp.Time()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.frames) >= maxFrames || s.frameBytes+len(e.Data) > maxFrameBytes {
		return
	}
	s.frames = append(s.frames, frame{Page: w.n, Time: at, jpeg: e.Data})
	s.frameBytes += len(e.Data)
}

// writeVideo writes the screencast under dir/video; it returns the frames written.
func (s *session) writeVideo(dir string) (int, error) {
	s.mu.Lock()
	frames := append([]frame(nil), s.frames...)
	s.mu.Unlock()
	if len(frames) == 0 {
		return 0, nil
	}
	vdir := filepath.Join(dir, "video")
	if err := os.MkdirAll(filepath.Join(vdir, "frames"), 0o755); err != nil {
		return 0, err
	}
	// Pages send frames concurrently: one timeline, by the frames' own times.
	slices.SortStableFunc(frames, func(a, b frame) int { return a.Time.Compare(b.Time) })
	t0 := frames[0].Time
	for i := range frames {
		frames[i].MS = frames[i].Time.Sub(t0).Milliseconds()
		frames[i].File = fmt.Sprintf("frames/%05d.jpg", i+1)
		if err := os.WriteFile(filepath.Join(vdir, frames[i].File), frames[i].jpeg, 0o644); err != nil {
			return 0, err
		}
	}
	list, _ := json.Marshal(frames)
	if err := os.WriteFile(filepath.Join(vdir, "frames.json"), list, 0o644); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(vdir, "index.html"), []byte(playerHTML(string(list))), 0o644); err != nil {
		return 0, err
	}
	g, err := encodeGIF(frames)
	if err != nil {
		return 0, fmt.Errorf("video.gif: %w", err)
	}
	return len(frames), os.WriteFile(filepath.Join(vdir, "video.gif"), g, 0o644)
}

// playerHTML is a page that shows the frames at their times. The artifact route
// serves it in a sandbox that allows scripts; the frame list is inline (json.Marshal
// escapes <, > and &, so it cannot end its script element), as a fetch from the
// opaque origin would be cross-origin.
func playerHTML(frames string) string {
	return `<!doctype html><meta charset="utf-8"><title>screencast</title>
<style>body{margin:0;background:#111;color:#ddd;font:14px sans-serif}img{display:block;max-width:100%;margin:auto}p{text-align:center}</style>
<img id="v" alt="screencast"><p id="t"></p>
<script type="application/json" id="frames">` + frames + `</script>
<script>
const frames = JSON.parse(document.getElementById('frames').textContent);
const v = document.getElementById('v'), t = document.getElementById('t');
let i = 0;
function show() {
  const f = frames[i];
  v.src = f.file;
  t.textContent = (f.ms / 1000).toFixed(1) + ' s, frame ' + (i + 1) + '/' + frames.length + ', page ' + f.page;
  const next = (i + 1) % frames.length;
  const wait = next === 0 ? 1500 : Math.max(frames[next].ms - f.ms, 20);
  i = next;
  setTimeout(show, wait);
}
if (frames.length) show();
</script>
`
}

// encodeGIF is the frames as an animated GIF: at most gifMaxWidth wide, at most
// gifMaxFrames (evenly kept), each shown until the next; frames are dropped until it
// fits in gifMaxBytes.
func encodeGIF(frames []frame) ([]byte, error) {
	step := 1
	for len(frames)/step > gifMaxFrames {
		step++
	}
	for {
		var keep []frame
		for i := 0; i < len(frames); i += step {
			keep = append(keep, frames[i])
		}
		out := &gif.GIF{}
		for _, f := range keep { // the screen holds the largest frame (pages differ)
			if c, err := jpeg.DecodeConfig(bytes.NewReader(f.jpeg)); err == nil {
				w, h := gifSize(c.Width, c.Height)
				out.Config.Width, out.Config.Height = max(out.Config.Width, w), max(out.Config.Height, h)
			}
		}
		for i, f := range keep {
			img, err := jpeg.Decode(bytes.NewReader(f.jpeg))
			if err != nil {
				return nil, fmt.Errorf("frame %d: %w", i+1, err)
			}
			delay := 150 // the last frame holds 1.5 s before the loop
			if i+1 < len(keep) {
				delay = int(max((keep[i+1].MS-f.MS)/10, 2))
			}
			out.Image = append(out.Image, paletted(img))
			out.Delay = append(out.Delay, delay)
		}
		var b bytes.Buffer
		if err := gif.EncodeAll(&b, out); err != nil {
			return nil, err
		}
		if b.Len() <= gifMaxBytes || len(keep) <= 1 {
			return b.Bytes(), nil
		}
		step *= 2
	}
}

// paletted scales img down to gifMaxWidth (nearest neighbour) onto the web-safe
// palette, by arithmetic rather than image/draw's palette search and dithering, which
// cost seconds a frame.
func paletted(img image.Image) *image.Paletted {
	b := img.Bounds()
	w, h := gifSize(b.Dx(), b.Dy())
	p := image.NewPaletted(image.Rect(0, 0, w, h), palette.WebSafe)
	yc, _ := img.(*image.YCbCr) // what image/jpeg decodes chromium's frames to
	for y := range h {
		sy := b.Min.Y + y*b.Dy()/h
		row := p.Pix[y*p.Stride:]
		for x := range w {
			sx := b.Min.X + x*b.Dx()/w
			var r, g, bl uint8
			if yc != nil {
				yi, ci := yc.YOffset(sx, sy), yc.COffset(sx, sy)
				r, g, bl = color.YCbCrToRGB(yc.Y[yi], yc.Cb[ci], yc.Cr[ci])
			} else {
				r16, g16, b16, _ := img.At(sx, sy).RGBA()
				r, g, bl = uint8(r16>>8), uint8(g16>>8), uint8(b16>>8)
			}
			row[x] = websafe(r)*36 + websafe(g)*6 + websafe(bl) // palette.WebSafe's order
		}
	}
	return p
}

// gifSize is a frame's size in the GIF: at most gifMaxWidth wide.
func gifSize(w, h int) (int, int) {
	if w > gifMaxWidth {
		return gifMaxWidth, max(h*gifMaxWidth/w, 1)
	}
	return w, h
}

// websafe is the nearest of 0x00, 0x33, …, 0xff, as 0..5.
func websafe(v uint8) uint8 { return uint8((int(v) + 25) / 51) }
