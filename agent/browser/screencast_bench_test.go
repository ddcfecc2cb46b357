package browser

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
	"time"
)

// BenchmarkEncodeGIF is video.gif's cost per screencast frame (1280×800 JPEG frames
// of a page, scaled to 640 px): ns/op is one frame.
func BenchmarkEncodeGIF(b *testing.B) {
	img := image.NewRGBA(image.Rect(0, 0, 1280, 800))
	for y := range 800 {
		for x := range 1280 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	jpeg.Encode(&buf, img, &jpeg.Options{Quality: 70})
	frames := make([]frame, 20)
	for i := range frames {
		frames[i] = frame{Time: time.Unix(0, int64(i)*int64(50*time.Millisecond)), MS: int64(i) * 50, jpeg: buf.Bytes()}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeGIF(frames); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/frame")
}
