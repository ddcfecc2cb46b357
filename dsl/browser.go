package dsl

import (
	"context"
	"encoding/json"
)

// Browser opens browser sessions for a run: a headless chromium in the sandbox, or a
// remote one (Cloudflare Browser Rendering through the edge's /v1/browser/cdp); the
// agent chooses per run. A session that cannot be had is *BrowserUnavailable.
type Browser interface {
	NewCDPSession(ctx context.Context, o SessionOptions) (CDPSession, error)
}

// SessionOptions says what a session starts with.
type SessionOptions struct {
	TargetURL string   // the first page opens here; "" = about:blank
	Viewport  Viewport // zero = 1280×800 desktop
	// Record records the first page as rrweb events (see CDPSession.Recording).
	Record bool
	// Trace records a Chromium performance trace until Capture.
	Trace bool
	// Screencast records every page the session watches as video frames (CDP
	// screencast), which Capture writes under video/.
	Screencast bool
}

// Viewport is the first page's window.
type Viewport struct {
	Width  int  `json:"width"`
	Height int  `json:"height"`
	Mobile bool `json:"mobile,omitempty"`
}

// Viewport presets of product-demo.
var (
	ViewportDesktop = Viewport{Width: 1280, Height: 800}
	ViewportMobile  = Viewport{Width: 390, Height: 844, Mobile: true}
)

// CDPSession is an open browser session. Only WSEndpoint belongs in a step result:
// the session itself lives as long as the attempt.
type CDPSession interface {
	// WSEndpoint is the browser-level CDP websocket URL that a command in the sandbox
	// connects to (CDP_WS_URL).
	WSEndpoint() string
	// Page is the session's first page, for runs that drive the browser themselves.
	Page() BrowserPage
	// Capture writes what the session saw so far under dir (a sandbox path):
	// console.ndjson and network.ndjson of every page, screenshots/page-<n>.png of each
	// page still open, trace.json when tracing, video/ when screencasting (frames,
	// frames.json, an index.html player and video.gif). It can be called more than once.
	Capture(ctx context.Context, dir string) (Capture, error)
	// Recording returns the rrweb events of the first page so far (SessionOptions.Record),
	// in order, each one JSON object ({"type":…, "data":…, "timestamp":ms}).
	Recording(ctx context.Context) ([]json.RawMessage, error)
	// Close ends the session (and the browser, when the session launched it).
	Close(ctx context.Context) error
}

// Capture is what CDPSession.Capture wrote.
type Capture struct {
	Pages         int   `json:"pages"`
	Screenshots   int   `json:"screenshots"`
	ConsoleLines  int   `json:"consoleLines"`
	ConsoleErrors int   `json:"consoleErrors"` // console.error calls and uncaught exceptions
	Requests      int   `json:"requests"`
	FailedLoads   int   `json:"failedLoads"` // responses ≥ 400 and requests that never got one
	TraceBytes    int64 `json:"traceBytes,omitempty"`
	VideoFrames   int   `json:"videoFrames,omitempty"`
}

// BrowserPage is one page a run drives: what a model-driven walkthrough needs.
type BrowserPage interface {
	// Navigate loads url and waits for the load event.
	Navigate(ctx context.Context, url string) error
	// Snapshot describes the page for a model: URL, title, visible text (clipped) and
	// the interactive elements, each with a Ref that Click and Type accept.
	Snapshot(ctx context.Context) (PageSnapshot, error)
	// Click clicks the element ref (a Snapshot ref or a CSS selector) and waits for the
	// page to settle.
	Click(ctx context.Context, ref string) error
	// Type focuses the element ref and types text into it.
	Type(ctx context.Context, ref, text string) error
	// Screenshot is a PNG of the viewport.
	Screenshot(ctx context.Context) ([]byte, error)
}

// PageSnapshot is a page as a model sees it.
type PageSnapshot struct {
	URL      string        `json:"url"`
	Title    string        `json:"title"`
	Text     string        `json:"text"`
	Elements []PageElement `json:"elements"`
}

// PageElement is an element a walkthrough can act on.
type PageElement struct {
	Ref  string `json:"ref"`            // a CSS selector unique in the page
	Tag  string `json:"tag"`            // a, button, input, …
	Role string `json:"role,omitempty"` // ARIA role when set
	Name string `json:"name"`           // visible label, placeholder or value
}
