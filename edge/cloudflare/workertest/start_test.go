//go:build !js

package workertest

import (
	"net"
	"testing"
)

// TestStartRetriesWhenItsPortIsTaken: a port found free can be taken before wrangler
// binds it (CI hit this: "Address already in use" and the test failed); Start then
// tries other ports. Here the first port it gets is held by a listener.
func TestStartRetriesWhenItsPortIsTaken(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	real := freePort
	calls := 0
	freePort = func() (int, error) {
		calls++
		if calls == 1 {
			return held.Addr().(*net.TCPAddr).Port, nil
		}
		return real()
	}
	defer func() { freePort = real }()

	w := start(t, Options{PersistDir: t.TempDir()})
	if calls < 4 {
		t.Fatalf("freePort called %d times: the first start was not retried", calls)
	}
	var h health
	getJSON(t, w, "/__dev/health", &h)
	if !h.OK {
		t.Fatalf("health after the retried start: %+v", h)
	}
}
