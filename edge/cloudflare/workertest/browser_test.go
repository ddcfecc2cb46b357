//go:build !js

package workertest

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/cdp"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/wsrelay"
)

// The Worker's websockets and preview URLs under `wrangler dev`: /v1/browser/cdp
// passes a live attempt's CDP socket through the JavaScript entry (the 101 Go
// answers names the upstream) to a real chromium that stands in for Browser
// Rendering (BROWSER_CDP_DEV_URL: the binding cannot be reached offline), and closes
// it when the run ends; a preview URL of the attempt reaches a port on the sandbox
// (LocalAgentProxy: the host's loopback) until the run ends.
func TestWorkerBrowserCDPAndPreviewURLs(t *testing.T) {
	endpoint := chromiumtest.Endpoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app says %s %s", r.Method, r.URL.RequestURI())
	}))
	defer app.Close()
	appURL, _ := url.Parse(app.URL)

	s := startEdge(t, map[string]string{"BROWSER_CDP_DEV_URL": endpoint, "SANDBOX_PREVIEW_HOSTNAME": "preview.flare.test"})
	repo, shas := gittest.Repo(t, 1)
	r := s.dispatch(t, "offload-test", offloadBody(repo, shas[0], "sleep 90"), "")
	if r.status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	for v, _ := s.view(t, id); v.Execution.Status != "running"; v, _ = s.view(t, id) {
		if ctx.Err() != nil {
			t.Fatalf("%s never ran: %+v", id, v.Execution)
		}
		time.Sleep(200 * time.Millisecond) // polling the executions API
	}
	claims := edge.AgentClaims{Exec: id, Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()}

	// A preview URL of the app's port, asked as the agent does.
	pr := s.do(t, http.MethodPost, "/v1/agent/"+url.PathEscape(id)+"/preview", []byte(`{"attempt":1,"port":`+appURL.Port()+`}`),
		map[string]string{"Authorization": "Bearer " + edge.MintAgentToken(s.cfg, claims)})
	if pr.status != http.StatusOK {
		t.Fatalf("preview: %d %s", pr.status, pr.raw)
	}
	pu, err := url.Parse(pr.body["url"].(string))
	if err != nil || !strings.HasSuffix(pu.Host, ".preview.flare.test") {
		t.Fatalf("preview url %v", pr.body["url"])
	}
	viaPreview := func() (int, string) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/v1/hello?x=1", nil)
		req.Host = pu.Host
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := viaPreview(); code != http.StatusOK || body != "app says GET /v1/hello?x=1" {
		t.Fatalf("through the preview URL: %d %s", code, body)
	}

	// The CDP pass-through.
	hs := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	if r := s.do(t, http.MethodGet, "/v1/browser/cdp?token=nope", nil, hs); r.status != http.StatusUnauthorized {
		t.Fatalf("bad token: %d %s", r.status, r.raw)
	}
	cdpURL := edge.BrowserCDPURL(s.cfg, s.URL, claims)
	ws := &cdp.WebSocket{}
	if err := ws.Connect(ctx, cdpURL, nil); err != nil {
		t.Fatal(err)
	}
	rb := rod.New().Client(cdp.New().Start(ws)).Context(ctx)
	if err := rb.Connect(); err != nil {
		t.Fatal(err)
	}
	p, err := rb.Page(proto.TargetCreateTarget{URL: "data:text/html,<title>via the Worker</title>"})
	if err != nil {
		t.Fatal(err)
	}
	p.MustWaitLoad()
	if info := p.MustInfo(); info.Title != "via the Worker" {
		t.Fatalf("title %q", info.Title)
	}
	// A large message (a screenshot is one frame of many KB).
	shot, err := p.Screenshot(true, &proto.PageCaptureScreenshot{Format: proto.PageCaptureScreenshotFormatPng})
	if err != nil || len(shot) < 1000 {
		t.Fatalf("screenshot through the Worker: %d bytes, %v", len(shot), err)
	}
	t.Logf("%s: rod drove chromium through the Worker (screenshot %d bytes)", time.Now().Format(time.StampMilli), len(shot))
	ws.Close() // rod reads a close frame as a message and panics: leave before the end

	// A raw socket that stays open until the run ends.
	raw := dialWS(t, cdpURL)
	defer raw.Close()
	raw.Write(wsrelay.ClientTextFrame([]byte(`{"id":7,"method":"Browser.getVersion"}`)))
	if op, msg := readFrame(t, raw); op != 1 || !strings.Contains(string(msg), `"id":7`) || !strings.Contains(string(msg), "product") {
		t.Fatalf("Browser.getVersion: opcode %d %s", op, msg)
	}

	// The run ends: the socket closes, and the preview URL is dead.
	c := s.do(t, http.MethodPost, "/v1/executions/"+url.PathEscape(id)+"/cancel", nil, map[string]string{"Authorization": "Bearer " + adminToken})
	if c.status/100 != 2 {
		t.Fatalf("cancel: %d %s", c.status, c.raw)
	}
	t.Logf("%s: cancelled", time.Now().Format(time.StampMilli))
	raw.SetReadDeadline(time.Now().Add(45 * time.Second))
	for {
		op, msg := readFrame(t, raw)
		if op == 8 {
			t.Logf("%s: closed by the Worker (%x)", time.Now().Format(time.StampMilli), msg)
			break
		}
	}
	if code, body := viaPreview(); code != http.StatusNotFound {
		t.Fatalf("preview after the run: %d %s", code, body)
	}
}

// dialWS opens a websocket to a ws:// URL by hand and returns the connection after
// the 101.
func dialWS(t *testing.T, wsURL string) net.Conn {
	t.Helper()
	u, _ := url.Parse(wsURL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", u.RequestURI(), u.Host)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", res, err)
	}
	if br.Buffered() > 0 {
		t.Fatal("bytes before the first frame")
	}
	return c
}

// readFrame reads one unmasked frame (as a server sends): its opcode and payload.
func readFrame(t *testing.T, c net.Conn) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(c, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(c, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(c, msg); err != nil {
		t.Fatalf("read frame payload: %v", err)
	}
	return h[0] & 0x0f, msg
}
