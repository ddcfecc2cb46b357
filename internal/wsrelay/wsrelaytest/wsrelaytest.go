// Package wsrelaytest sends raw websocket handshakes, for tests of the routes that
// upgrade (the agent's /cdp, the edge's /v1/browser/cdp): a route that refuses must
// answer with a plain status before any upgrade, which a websocket client library
// would hide behind its own error.
package wsrelaytest

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
)

// HandshakeStatus sends GET target (a path with its query) as a websocket upgrade
// to the server at base (http://host:port), with the extra header lines, and
// returns the status the server answered.
func HandshakeStatus(t testing.TB, base, target string, header map[string]string) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for k, v := range header {
		req += k + ": " + v + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
