package wsrelay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/agent/browser"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
)

// A CDP client drives a real chromium through the relay.
func TestRelayCarriesCDPToARealChromium(t *testing.T) {
	bin := chromiumtest.Bin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := browser.New(browser.Config{Bin: bin, TempDir: t.TempDir()})
	defer b.Close()
	s, err := b.NewCDPSession(ctx, dsl.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := relayServer(t, s.WSEndpoint(), nil)
	rb := rod.New().ControlURL("ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/browser/cdp").Context(ctx)
	if err := rb.Connect(); err != nil {
		t.Fatal(err)
	}
	p, err := rb.Page(rodTarget("data:text/html,<title>through the relay</title>"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitLoad(); err != nil {
		t.Fatal(err)
	}
	if info, err := p.Info(); err != nil || info.Title != "through the relay" {
		t.Fatalf("%+v %v", info, err)
	}
}

func rodTarget(u string) proto.TargetCreateTarget { return proto.TargetCreateTarget{URL: u} }
