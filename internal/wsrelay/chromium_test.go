package wsrelay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
)

// A CDP client drives a real chromium through the relay.
func TestRelayCarriesCDPToARealChromium(t *testing.T) {
	endpoint := chromiumtest.Endpoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := relayServer(t, endpoint, nil)
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
