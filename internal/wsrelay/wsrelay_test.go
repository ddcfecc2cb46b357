package wsrelay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/wsrelay"
)

// rawUpstream is a websocket server at the byte level: it answers the handshake, then
// sends hello, and records every byte it receives until the connection closes.
func rawUpstream(t *testing.T, hello []byte) (string, <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
			base64.StdEncoding.EncodeToString(sum[:])+"\r\nX-Upstream-Auth: "+req.Header.Get("Authorization")+"\r\n\r\n")
		c.Write(hello)
		all, _ := io.ReadAll(br)
		got <- all
	}()
	return "ws://" + ln.Addr().String() + "/devtools/browser/x", got
}

func relayServer(t *testing.T, upstream string, atEnd func(io.Writer)) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !wsrelay.IsUpgrade(r) {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		up, err := wsrelay.Dial(r.Context(), upstream, r, http.Header{"Authorization": {"Bearer upstream-secret"}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		wsrelay.Relay(context.Background(), w, up, atEnd)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Every byte crosses unchanged both ways: frames (masked or not, even malformed ones)
// are not re-framed, and the client's key is answered by the upstream's accept.
func TestRelayIsByteExactBothWays(t *testing.T) {
	hello := []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o', 0x89, 0x00} // a text frame and a ping
	upstream, got := rawUpstream(t, hello)
	srv := relayServer(t, upstream, func(up io.Writer) {
		up.Write(wsrelay.ClientTextFrame([]byte(`{"id":-9999,"method":"Browser.close","params":{}}`)))
	})

	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	io.WriteString(c, "GET /v1/browser/cdp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "+key+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" || resp.Header.Get("X-Upstream-Auth") != "" {
		t.Fatalf("handshake %d %v", resp.StatusCode, resp.Header)
	}
	first := make([]byte, len(hello))
	if _, err := io.ReadFull(br, first); err != nil || !bytes.Equal(first, hello) {
		t.Fatalf("client got %x, want %x (%v)", first, hello, err)
	}
	sent := append(wsrelay.ClientTextFrame([]byte(`{"id":1,"method":"Browser.getVersion"}`)), 0x82, 0x83, 1, 2, 3, 4, 9, 9, 9) // a binary frame too
	c.Write(sent)
	c.Close() // the client goes away without a close frame: the relay ends the upstream's session
	select {
	case all := <-got:
		if !bytes.HasPrefix(all, sent) {
			t.Fatalf("upstream got %x, want it to start with %x", all, sent)
		}
		if rest := all[len(sent):]; len(rest) == 0 || rest[0] != 0x81 {
			t.Fatalf("no Browser.close frame after the client left: %x", rest)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream connection was not closed after the client left")
	}
}

func TestUpstreamRefusalIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", http.StatusForbidden) }))
	defer srv.Close()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Sec-WebSocket-Key", "k")
	_, err := wsrelay.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), r, nil)
	var re *wsrelay.RefusedError
	if !errorsAs(err, &re) || re.Status != 403 {
		t.Fatalf("%v", err)
	}
}

func errorsAs(err error, target **wsrelay.RefusedError) bool {
	re, ok := err.(*wsrelay.RefusedError)
	if ok {
		*target = re
	}
	return ok
}
