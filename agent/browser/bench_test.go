package browser_test

import (
	"context"
	"testing"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/agent/browser"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
)

// BenchmarkSession is a run's browser: launch chromium, connect, first page ready,
// then close (kill the process group, remove the profile).
func BenchmarkSession(b *testing.B) {
	bin := chromiumtest.Bin(b)
	ctx := context.Background()
	br := browser.New(browser.Config{Bin: bin, TempDir: b.TempDir()})
	defer br.Close()
	for b.Loop() {
		s, err := br.NewCDPSession(ctx, dsl.SessionOptions{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close(ctx)
	}
}

// BenchmarkPage is the per-page cost inside a session: a new page, a navigation to a
// small local app until its load event, and closing the page.
func BenchmarkPage(b *testing.B) {
	bin := chromiumtest.Bin(b)
	srv := appServer(b)
	ctx := context.Background()
	br := browser.New(browser.Config{Bin: bin, TempDir: b.TempDir()})
	defer br.Close()
	s, err := br.NewCDPSession(ctx, dsl.SessionOptions{})
	if err != nil {
		b.Fatal(err)
	}
	client := rod.New().ControlURL(s.WSEndpoint()).Context(ctx)
	if err := client.Connect(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		p, err := client.Page(proto.TargetCreateTarget{URL: srv.URL})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.WaitLoad(); err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}
