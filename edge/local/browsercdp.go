package local

import (
	"context"
	"fmt"
	"net/http"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/internal/wsrelay"
)

// browserCDP is the local stack's edge.BrowserCDP: the CDP websocket at
// BROWSER_CDP_URL (e.g. a chromium started with --remote-debugging-port), passed
// through byte for byte. The browser is shared, not acquired per connection, so a
// client leaving does not close it.
type browserCDP struct{ url string }

func (b browserCDP) Relay(ctx context.Context, w http.ResponseWriter, r *http.Request, _ edge.CDPTarget) error {
	up, err := wsrelay.Dial(ctx, b.url, r, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", edge.ErrBrowserUpstream, err)
	}
	return wsrelay.Relay(ctx, w, up, nil)
}

var _ edge.BrowserCDP = browserCDP{}
