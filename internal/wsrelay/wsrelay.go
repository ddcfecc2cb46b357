// Package wsrelay passes a websocket through an HTTP handler byte for byte: the
// client's handshake is forwarded to an upstream websocket (its Sec-WebSocket-Key too,
// so the upstream's Sec-WebSocket-Accept answers the client), and once the upstream
// switched protocols the two connections are copied both ways unchanged — frames,
// masks, pings and close frames exactly as each side sent them. The edge's
// /v1/browser/cdp uses it to hand a sandbox the CDP websocket of a browser the sandbox
// holds no credential for.
package wsrelay

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// IsUpgrade reports whether r asks to switch to a websocket.
func IsUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHas(r.Header, "Connection", "upgrade") &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && r.Header.Get("Sec-WebSocket-Key") != ""
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Upstream is an upstream websocket after its 101 answer.
type Upstream struct {
	conn   net.Conn
	br     *bufio.Reader // bytes the upstream sent after its 101 are buffered here
	Header http.Header   // the upstream's 101 headers
}

// Close closes the upstream connection.
func (u *Upstream) Close() error { return u.conn.Close() }

// Dial opens wsURL (ws:// or wss://) with the client's handshake: its
// Sec-WebSocket-Key, -Version, -Protocol and -Extensions, plus header (e.g. an
// Authorization the client never sees). A refusal is an error carrying the status.
func Dial(ctx context.Context, wsURL string, client *http.Request, header http.Header) (*Upstream, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, fmt.Errorf("upstream url: %w", err)
	}
	host := u.Host
	var conn net.Conn
	d := &net.Dialer{Timeout: 15 * time.Second}
	switch u.Scheme {
	case "ws":
		if u.Port() == "" {
			host += ":80"
		}
		conn, err = d.DialContext(ctx, "tcp", host)
	case "wss":
		if u.Port() == "" {
			host += ":443"
		}
		conn, err = (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: u.Hostname()}}).DialContext(ctx, "tcp", host)
	default:
		return nil, fmt.Errorf("upstream url %q: want ws:// or wss://", wsURL)
	}
	if err != nil {
		return nil, fmt.Errorf("dial upstream: %w", err)
	}
	req := &http.Request{Method: http.MethodGet, URL: u, Host: u.Host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	for _, k := range []string{"Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
		if v := client.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("upstream handshake: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("upstream handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return nil, &RefusedError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	conn.SetDeadline(time.Time{})
	return &Upstream{conn: conn, br: br, Header: resp.Header}, nil
}

// RefusedError is an upstream that did not switch protocols.
type RefusedError struct {
	Status int
	Body   string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("upstream answered %d instead of 101: %s", e.Status, e.Body)
}

// Relay answers the client's handshake with the upstream's 101 and copies bytes both
// ways until either side closes or ctx ends; then both connections are closed. When the
// client's side ends first, atClientEnd (if not nil) may still write to the upstream
// (whole frames: nothing else is writing then), e.g. a close command. It returns when
// both directions stopped.
func Relay(ctx context.Context, w http.ResponseWriter, up *Upstream, atClientEnd func(upstream io.Writer)) error {
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		return errors.New("wsrelay: the response cannot be hijacked")
	}
	client, cbuf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return err
	}
	var head strings.Builder
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	for _, k := range []string{"Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
		if v := up.Header.Get(k); v != "" {
			head.WriteString(k + ": " + v + "\r\n")
		}
	}
	head.WriteString("\r\n")
	if _, err := client.Write([]byte(head.String())); err != nil {
		client.Close()
		up.Close()
		return err
	}
	var once sync.Once
	closeBoth := func() { once.Do(func() { client.Close(); up.conn.Close() }) }
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()

	done := make(chan struct{}, 2)
	go func() { // upstream → client, including what the upstream sent with its 101
		io.Copy(client, up.br)
		closeBoth()
		done <- struct{}{}
	}()
	go func() { // client → upstream, including what the client pipelined after its handshake
		_, err := io.Copy(up.conn, cbuf.Reader)
		if atClientEnd != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			up.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			atClientEnd(up.conn)
		}
		closeBoth()
		done <- struct{}{}
	}()
	<-done
	<-done
	return nil
}

// ClientTextFrame is one masked text frame, as a websocket client sends it.
func ClientTextFrame(payload []byte) []byte {
	n := len(payload)
	var hdr []byte
	switch {
	case n < 126:
		hdr = []byte{0x81, 0x80 | byte(n)}
	case n <= 0xffff:
		hdr = []byte{0x81, 0x80 | 126, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = 0x81, 0x80|127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	out := append(hdr, mask[:]...)
	for i, b := range payload {
		out = append(out, b^mask[i%4])
	}
	return out
}
