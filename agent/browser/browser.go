// Package browser is the agent's implementation of dsl.Browser on go-rod: a CDP
// session per run, either on a headless chromium this package launches in the sandbox
// (Debian's /usr/bin/chromium; nothing is ever downloaded) or on a remote browser
// reached over a CDP websocket (Cloudflare Browser Rendering through the edge's
// /v1/browser/cdp). Each session captures console and network events of every page,
// takes screenshots, records a trace on request and records its first page as rrweb
// events on request.
package browser

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/cdp"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/launcher/flags"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// DefaultBin is Debian's chromium package.
const DefaultBin = "/usr/bin/chromium"

// Config says where sessions get their browser.
type Config struct {
	// Bin is the chromium to launch (default $CHROME_PATH, else DefaultBin).
	Bin string
	// RemoteURL, when set, is a CDP websocket every session connects to instead of
	// launching chromium; RemoteHeader goes with the handshake (e.g. a bearer token).
	RemoteURL    string
	RemoteHeader http.Header
	// TempDir holds the launched browsers' profiles (default os.TempDir()).
	TempDir string
	// LaunchTimeout bounds chromium's start (default 30 s).
	LaunchTimeout time.Duration
	Log           *slog.Logger
}

// Browser opens sessions; Close ends every session still open.
type Browser struct {
	cfg Config

	mu       sync.Mutex
	closed   bool
	sessions map[*session]struct{}
	opened   int // sessions opened so far (session.n)
}

var _ dsl.Browser = (*Browser)(nil)

// New returns a Browser; it starts nothing until a session is asked for.
func New(cfg Config) *Browser {
	if cfg.Bin == "" {
		cfg.Bin = os.Getenv("CHROME_PATH")
	}
	if cfg.Bin == "" {
		cfg.Bin = DefaultBin
	}
	if cfg.LaunchTimeout <= 0 {
		cfg.LaunchTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Browser{cfg: cfg, sessions: map[*session]struct{}{}}
}

// NewCDPSession implements dsl.Browser. Failing to launch or reach the browser is
// *dsl.BrowserUnavailable (transient).
func (b *Browser) NewCDPSession(ctx context.Context, o dsl.SessionOptions) (dsl.CDPSession, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, &dsl.BrowserUnavailable{Reason: "transient", Cause: "the agent is closing its browsers"}
	}
	b.mu.Unlock()

	s := &session{b: b, opts: o, done: make(chan struct{})}
	if err := s.open(ctx); err != nil {
		s.shutdown()
		return nil, &dsl.BrowserUnavailable{Reason: "transient", Cause: err.Error()}
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		s.shutdown()
		return nil, &dsl.BrowserUnavailable{Reason: "transient", Cause: "the agent is closing its browsers"}
	}
	b.opened++
	s.n = b.opened
	b.sessions[s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

// Close ends every open session (and the browsers they launched).
func (b *Browser) Close() error {
	b.mu.Lock()
	b.closed = true
	list := make([]*session, 0, len(b.sessions))
	for s := range b.sessions {
		list = append(list, s)
	}
	b.mu.Unlock()
	var errs []error
	for _, s := range list {
		errs = append(errs, s.Close(context.Background()))
	}
	return errors.Join(errs...)
}

// Endpoint is the CDP websocket of the newest open session ("" without one).
func (b *Browser) Endpoint() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var newest *session
	for s := range b.sessions {
		if newest == nil || s.n > newest.n {
			newest = s
		}
	}
	if newest == nil {
		return ""
	}
	return newest.WSEndpoint()
}

func (b *Browser) forget(s *session) {
	b.mu.Lock()
	delete(b.sessions, s)
	b.mu.Unlock()
}

// chromium is a browser process this package launched: its own process group, killed
// whole (and by the kernel when the agent dies), its profile removed after.
type chromium struct {
	cmd     *exec.Cmd
	profile string
	exited  chan struct{}
}

var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// launchArgs are chromium's flags: rod's launcher defaults (pointed at our binary, no
// leakless helper, no download) minus no-startup-window, which costs ~150 ms a page
// (libraries.md), plus what a container needs. The startup window opens about:blank
// and becomes the session's first page, which saves creating one.
func launchArgs(profile string) []string {
	l := launcher.New().
		Leakless(false).
		Headless(true).
		NoSandbox(true).
		UserDataDir(profile).
		Delete("no-startup-window").
		Set(flags.RemoteDebuggingPort, "0").
		Set("disable-gpu").
		Set("disable-component-update").
		Set("mute-audio").
		Set("hide-scrollbars").
		StartURL("about:blank")
	l.Delete(flags.Bin)
	return l.FormatArgs()
}

// launch starts chromium and returns its browser websocket URL.
func (b *Browser) launch(ctx context.Context) (*chromium, string, error) {
	if _, err := os.Stat(b.cfg.Bin); err != nil {
		return nil, "", fmt.Errorf("chromium not found at %s (install Debian's chromium: apt-get install -y chromium): %w", b.cfg.Bin, err)
	}
	profile, err := os.MkdirTemp(b.cfg.TempDir, "flare-chromium-")
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(b.cfg.Bin, launchArgs(profile)...)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	setProcAttr(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(profile)
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(profile)
		return nil, "", fmt.Errorf("start %s: %w", b.cfg.Bin, err)
	}
	c := &chromium{cmd: cmd, profile: profile, exited: make(chan struct{})}
	found := make(chan string, 1)
	var tail []string
	var tailMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent {
				if m := devtoolsLine.FindStringSubmatch(line); m != nil {
					found <- m[1]
					sent = true
					continue
				}
				tailMu.Lock()
				tail = append(tail, line)
				if len(tail) > 20 {
					tail = tail[1:]
				}
				tailMu.Unlock()
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(c.exited)
	}()
	timer := time.NewTimer(b.cfg.LaunchTimeout)
	defer timer.Stop()
	select {
	case u := <-found:
		return c, u, nil
	case <-c.exited:
		tailMu.Lock()
		defer tailMu.Unlock()
		c.kill()
		return nil, "", fmt.Errorf("chromium exited before listening: %v", tail)
	case <-timer.C:
		c.kill()
		return nil, "", fmt.Errorf("chromium did not listen within %s", b.cfg.LaunchTimeout)
	case <-ctx.Done():
		c.kill()
		return nil, "", context.Cause(ctx)
	}
}

// kill ends the process group, waits for the process and removes the profile.
func (c *chromium) kill() {
	killGroup(c.cmd.Process.Pid)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
	}
	_ = os.RemoveAll(c.profile)
}

// connect attaches rod to a websocket URL.
func connect(ctx context.Context, u string, header http.Header) (*rod.Browser, error) {
	client, err := cdp.StartWithURL(ctx, u, header)
	if err != nil {
		return nil, fmt.Errorf("connect to CDP at %s: %w", redactURL(u), err)
	}
	rb := rod.New().Context(ctx).Client(client).NoDefaultDevice()
	if err := rb.Connect(); err != nil {
		return nil, fmt.Errorf("attach to CDP at %s: %w", redactURL(u), err)
	}
	return rb, nil
}

var tokenParam = regexp.MustCompile(`([?&](?:token|t)=)[^&]+`)

// redactURL hides a token in a query string (the edge's pass-through takes ?token=).
func redactURL(u string) string { return tokenParam.ReplaceAllString(u, "${1}…") }
