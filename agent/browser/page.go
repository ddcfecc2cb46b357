package browser

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

var (
	//go:embed recorder.js
	recorderJS string
	//go:embed snapshot.js
	snapshotJS string
)

// page is dsl.BrowserPage on a rod page.
type page struct {
	s *session
	p *rod.Page
	n int
}

var _ dsl.BrowserPage = (*page)(nil)

// actionTimeout bounds one page action.
const actionTimeout = 30 * time.Second

func (pg *page) on(ctx context.Context) *rod.Page { return pg.p.Context(ctx).Timeout(actionTimeout) }

// Navigate implements dsl.BrowserPage.
func (pg *page) Navigate(ctx context.Context, url string) error {
	p := pg.on(ctx)
	pg.flush(ctx) // the recorder's last changes of the page being left
	if err := p.Navigate(url); err != nil {
		return fmt.Errorf("navigate to %s: %w", url, err)
	}
	if err := p.WaitLoad(); err != nil {
		return fmt.Errorf("load %s: %w", url, err)
	}
	pg.flush(ctx)
	return nil
}

// Snapshot implements dsl.BrowserPage.
func (pg *page) Snapshot(ctx context.Context) (dsl.PageSnapshot, error) {
	var snap dsl.PageSnapshot
	pg.flush(ctx)
	res, err := pg.on(ctx).Eval(snapshotJS)
	if err != nil {
		return snap, fmt.Errorf("snapshot: %w", err)
	}
	if err := json.Unmarshal([]byte(res.Value.JSON("", "")), &snap); err != nil {
		return snap, fmt.Errorf("snapshot: %w", err)
	}
	return snap, nil
}

// Click implements dsl.BrowserPage: a real mouse click in the element's middle, then
// a short wait for the page to settle (a navigation it started, or requests).
func (pg *page) Click(ctx context.Context, ref string) error {
	p := pg.on(ctx)
	pg.flush(ctx)
	el, err := p.Timeout(5 * time.Second).Element(ref)
	if err != nil {
		return fmt.Errorf("no element %s: %w", ref, err)
	}
	if err := el.Context(p.GetContext()).Click(proto.InputMouseButtonLeft, 1); err != nil {
		return fmt.Errorf("click %s: %w", ref, err)
	}
	pg.settle(ctx)
	return nil
}

// Type implements dsl.BrowserPage.
func (pg *page) Type(ctx context.Context, ref, text string) error {
	p := pg.on(ctx)
	el, err := p.Timeout(5 * time.Second).Element(ref)
	if err != nil {
		return fmt.Errorf("no element %s: %w", ref, err)
	}
	el = el.Context(p.GetContext())
	if err := el.SelectAllText(); err != nil {
		_ = el.Focus()
	}
	if err := el.Input(text); err != nil {
		return fmt.Errorf("type into %s: %w", ref, err)
	}
	pg.settle(ctx)
	return nil
}

// settle waits briefly for the page to be idle after an action: at most 3 s, so a page
// that polls forever does not stall a walkthrough.
func (pg *page) settle(ctx context.Context) {
	p := pg.p.Context(ctx).Timeout(3 * time.Second)
	p.WaitRequestIdle(300*time.Millisecond, nil, nil, nil)()
	_ = p.WaitLoad()
	pg.flush(ctx)
}

// Screenshot implements dsl.BrowserPage.
func (pg *page) Screenshot(ctx context.Context) ([]byte, error) {
	return pg.on(ctx).Screenshot(false, &proto.PageCaptureScreenshot{Format: proto.PageCaptureScreenshotFormatPng})
}

// startRecording installs the recorder on this and every later document of the page.
func (pg *page) startRecording() error {
	if _, err := pg.p.EvalOnNewDocument(recorderJS); err != nil {
		return err
	}
	_, err := pg.p.Eval(`() => { ` + recorderJS + ` }`)
	return err
}

// flush drains the recorder's events of the current document into the session.
func (pg *page) flush(ctx context.Context) {
	if !pg.s.opts.Record {
		return
	}
	res, err := pg.p.Context(ctx).Timeout(5 * time.Second).Eval(`() => window.__flareRRDrain ? window.__flareRRDrain() : []`)
	if err != nil {
		return // the page is gone or navigating: its undrained events are lost
	}
	var batch []string
	if json.Unmarshal([]byte(res.Value.JSON("", "")), &batch) != nil {
		return
	}
	s := pg.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range batch {
		if len(s.events) < maxEvents && s.eventBytes+len(e) <= maxEventBytes && json.Valid([]byte(e)) {
			s.events = append(s.events, json.RawMessage(e))
			s.eventBytes += len(e)
		}
	}
}
