package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// session is one dsl.CDPSession.
type session struct {
	b    *Browser
	opts dsl.SessionOptions
	n    int // its order among the browser's sessions (Browser.Endpoint)

	proc    *chromium // nil for a remote browser
	ws      string
	rb      *rod.Browser
	ctx     context.Context // lives as long as the session
	cancel  context.CancelFunc
	first   *page
	tracing bool
	done    chan struct{}

	mu         sync.Mutex
	pages      map[proto.TargetTargetID]*watched
	order      []proto.TargetTargetID
	console    []consoleEntry
	network    map[proto.NetworkRequestID]*netEntry
	netSeq     []proto.NetworkRequestID
	events     []json.RawMessage // rrweb events of the first page
	eventBytes int
	frames     []frame // the screencast (screencast.go)
	frameBytes int

	closeOnce sync.Once
	closeErr  error
}

// watched is a page whose events the session collects.
type watched struct {
	n    int // 1-based, in the order the session saw the page
	page *rod.Page
	url  string
}

// Bounds on what a session keeps in memory.
const (
	maxConsole    = 5000
	maxNetwork    = 10000
	maxEvents     = 20000
	maxEventBytes = 64 << 20 // a recording past this keeps its beginning
)

func (s *session) open(ctx context.Context) error {
	s.pages = map[proto.TargetTargetID]*watched{}
	s.network = map[proto.NetworkRequestID]*netEntry{}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	t0 := time.Now()
	defer func() {
		s.b.cfg.Log.Debug("browser session opened", "remote", s.proc == nil, "ms", time.Since(t0).Milliseconds())
	}()
	if s.b.cfg.RemoteURL != "" {
		s.ws = s.b.cfg.RemoteURL
	} else {
		proc, ws, err := s.b.launch(ctx)
		if err != nil {
			return err
		}
		s.proc, s.ws = proc, ws
		s.b.cfg.Log.Debug("chromium launched", "ms", time.Since(t0).Milliseconds())
	}
	rb, err := connect(s.ctx, s.ws, s.b.cfg.RemoteHeader)
	if err != nil {
		return err
	}
	if s.proc == nil {
		// A remote browser may be shared: the session gets a browser context of its own,
		// watches only its targets, and disposes of it (not the browser) at Close.
		if rb, err = rb.Incognito(); err != nil {
			return fmt.Errorf("create a browser context: %w", err)
		}
	}
	s.rb = rb
	s.b.cfg.Log.Debug("cdp connected", "ms", time.Since(t0).Milliseconds())
	// Pages opened later (by the run's own CDP client, or by the page) are watched too.
	go rb.EachEvent(func(e *proto.TargetTargetCreated) {
		if e.TargetInfo.Type == proto.TargetTargetInfoTypePage && (rb.BrowserContextID == "" || e.TargetInfo.BrowserContextID == rb.BrowserContextID) {
			go s.watchTarget(e.TargetInfo.TargetID)
		}
	}, func(e *proto.TargetTargetDestroyed) {
		s.mu.Lock()
		delete(s.pages, e.TargetID)
		s.mu.Unlock()
	})()

	if s.opts.Trace {
		err := proto.TracingStart{
			TransferMode: proto.TracingStartTransferModeReturnAsStream,
			TraceConfig: &proto.TracingTraceConfig{IncludedCategories: []string{
				"devtools.timeline", "v8.execute", "disabled-by-default-devtools.timeline", "blink.user_timing", "loading", "latencyInfo"}},
		}.Call(rb)
		if err != nil {
			return fmt.Errorf("start trace: %w", err)
		}
		s.tracing = true
	}

	vp := s.opts.Viewport
	if vp.Width <= 0 || vp.Height <= 0 {
		vp = dsl.ViewportDesktop
	}
	rp, err := s.firstPage()
	if err != nil {
		return fmt.Errorf("open a page: %w", err)
	}
	s.b.cfg.Log.Debug("page created", "ms", time.Since(t0).Milliseconds())
	w := s.watch(rp)
	s.b.cfg.Log.Debug("page watched", "ms", time.Since(t0).Milliseconds())
	if err := rp.SetViewport(&proto.EmulationSetDeviceMetricsOverride{Width: vp.Width, Height: vp.Height, DeviceScaleFactor: 1, Mobile: vp.Mobile}); err != nil {
		return fmt.Errorf("set viewport: %w", err)
	}
	s.first = &page{s: s, p: rp, n: w.n}
	if s.opts.Record {
		if err := s.first.startRecording(); err != nil {
			return fmt.Errorf("start recording: %w", err)
		}
	}
	if s.opts.TargetURL != "" {
		if err := s.first.Navigate(ctx, s.opts.TargetURL); err != nil {
			return err
		}
	}
	return nil
}

// firstPage is the launched browser's startup tab, or a new page.
func (s *session) firstPage() (*rod.Page, error) {
	if s.proc != nil {
		if pages, err := s.rb.Pages(); err == nil {
			for _, p := range pages {
				if info, err := p.Info(); err == nil && info.URL == "about:blank" {
					return p, nil
				}
			}
		}
	}
	return s.rb.Page(proto.TargetCreateTarget{URL: "about:blank"})
}

// watchTarget attaches to a page target the session did not open itself.
func (s *session) watchTarget(id proto.TargetTargetID) {
	s.mu.Lock()
	_, seen := s.pages[id]
	s.mu.Unlock()
	if seen {
		return
	}
	p, err := s.rb.PageFromTarget(id)
	if err != nil {
		return // gone already
	}
	s.watch(p)
}

// watch starts collecting a page's console and network events.
func (s *session) watch(p *rod.Page) *watched {
	s.mu.Lock()
	if w, ok := s.pages[p.TargetID]; ok {
		s.mu.Unlock()
		return w
	}
	w := &watched{n: len(s.order) + 1, page: p}
	s.pages[p.TargetID] = w
	s.order = append(s.order, p.TargetID)
	s.mu.Unlock()

	ready := make(chan struct{})
	go func() {
		wait := p.Context(s.ctx).EachEvent(
			func(e *proto.RuntimeConsoleAPICalled) { s.onConsole(w, e) },
			func(e *proto.RuntimeExceptionThrown) { s.onException(w, e) },
			func(e *proto.NetworkRequestWillBeSent) { s.onRequest(w, e) },
			func(e *proto.NetworkResponseReceived) { s.onResponse(w, e) },
			func(e *proto.NetworkLoadingFailed) { s.onFailed(e) },
			func(e *proto.PageScreencastFrame) { s.onFrame(w, e) },
		)
		close(ready) // the domains are enabled once EachEvent returned
		wait()
	}()
	<-ready
	if s.opts.Screencast {
		if err := s.startScreencast(w); err != nil {
			s.b.cfg.Log.Warn("screencast did not start", "page", w.n, "err", err)
		}
	}
	return w
}

func (s *session) WSEndpoint() string { return s.ws }

func (s *session) Page() dsl.BrowserPage { return s.first }

// Recording implements dsl.CDPSession.
func (s *session) Recording(ctx context.Context) ([]json.RawMessage, error) {
	if !s.opts.Record {
		return nil, errors.New("the session was not opened with Record")
	}
	s.first.flush(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]json.RawMessage(nil), s.events...), nil
}

// Capture implements dsl.CDPSession.
func (s *session) Capture(ctx context.Context, dir string) (dsl.Capture, error) {
	var c dsl.Capture
	if err := os.MkdirAll(filepath.Join(dir, "screenshots"), 0o755); err != nil {
		return c, err
	}
	s.mu.Lock()
	pages := make([]*watched, 0, len(s.pages))
	for _, id := range s.order {
		if w, ok := s.pages[id]; ok {
			pages = append(pages, w)
		}
	}
	s.mu.Unlock()
	c.Pages = len(pages)
	for _, w := range pages {
		// A background tab is not painted by headless chromium, and a screenshot of it
		// waits for a frame that never comes: bring each page to the front first.
		_, _ = w.page.Context(ctx).Timeout(5 * time.Second).Activate()
		shot, err := w.page.Context(ctx).Timeout(15*time.Second).Screenshot(false, &proto.PageCaptureScreenshot{Format: proto.PageCaptureScreenshotFormatPng})
		if err != nil {
			continue // closed meanwhile, or never painted
		}
		if err := os.WriteFile(filepath.Join(dir, "screenshots", fmt.Sprintf("page-%d.png", w.n)), shot, 0o644); err != nil {
			return c, err
		}
		c.Screenshots++
	}
	if err := s.writeLogs(dir, &c); err != nil {
		return c, err
	}
	n, err := s.writeVideo(dir)
	if err != nil {
		return c, err
	}
	c.VideoFrames = n
	if s.tracing {
		n, err := s.writeTrace(ctx, filepath.Join(dir, "trace.json"))
		if err != nil {
			return c, fmt.Errorf("trace: %w", err)
		}
		c.TraceBytes = n
	}
	return c, nil
}

// Close implements dsl.CDPSession: the browser it launched is killed and its profile
// removed; a remote browser is asked to close its session.
func (s *session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.b.forget(s)
		s.closeErr = s.shutdown()
	})
	return s.closeErr
}

func (s *session) shutdown() error {
	if s.rb != nil && s.proc == nil {
		// Only the session's own browser context: the browser may serve others (the
		// edge's pass-through ends a Browser Rendering session when the socket closes).
		_ = s.rb.Timeout(5 * time.Second).Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.proc != nil {
		s.proc.kill()
	}
	if s.done != nil {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
	return nil
}
