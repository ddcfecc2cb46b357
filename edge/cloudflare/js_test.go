//go:build js && wasm

// These tests run under node:
//
//	GOOS=js GOARCH=wasm go test -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" ./edge/cloudflare/

package cloudflare

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"syscall/js"
	"testing"
	"time"
)

func resolved(v any) js.Value { return jsPromise.Call("resolve", v) }

func rejected(msg string) js.Value {
	return jsPromise.Call("reject", js.Global().Get("TypeError").New(msg))
}

func TestAwaitReturnsValueOrError(t *testing.T) {
	ctx := context.Background()
	v, err := Await(ctx, resolved(42))
	if err != nil || v.Int() != 42 {
		t.Fatalf("resolved: %v %v", v, err)
	}
	if v, err := Await(ctx, js.ValueOf("plain")); err != nil || v.String() != "plain" {
		t.Fatalf("non-promise: %v %v", v, err)
	}
	_, err = Await(ctx, rejected("bad thing"))
	var je *JSError
	if !errors.As(err, &je) || je.Name != "TypeError" || je.Message != "bad thing" {
		t.Fatalf("rejected: %#v", err)
	}
}

func TestAwaitEndsWithItsContext(t *testing.T) {
	never := jsPromise.New(js.FuncOf(func(js.Value, []js.Value) any { return nil }))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := Await(ctx, never); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

// TestAwaitReleasesBothCallbacks awaits many settled promises: a helper that kept
// the callback that did not fire (as syumai/workers' does, about 215 B each) would
// grow the heap by megabytes.
func TestAwaitReleasesBothCallbacks(t *testing.T) {
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for range 1000 { // warm up
		Await(ctx, resolved(1))
	}
	before := heap()
	const n = 20000
	for i := range n {
		if i%2 == 0 {
			Await(ctx, resolved(i))
		} else {
			Await(ctx, rejected("x"))
		}
	}
	if grown := int64(heap()) - int64(before); grown > n*20 {
		t.Fatalf("heap grew %d bytes over %d awaits: callbacks leak", grown, n)
	}
}

func TestHeadersRoundTrip(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"a=1", "b=2"}, "Bad": {"x\ny"}}
	got := parseHeaders(formatHeaders(h))
	if got.Get("Content-Type") != "application/json" || len(got["Set-Cookie"]) != 2 || got.Get("Bad") != "" {
		t.Fatalf("headers = %v", got)
	}
}

func TestStreamReaderReadsChunks(t *testing.T) {
	chunks := []string{"hello, ", "", "streaming ", "world"}
	i := 0
	pull := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ctrl := args[0]
		if i == len(chunks) {
			ctrl.Call("close")
		} else {
			ctrl.Call("enqueue", bytesToJS([]byte(chunks[i])))
			i++
		}
		return nil
	})
	defer pull.Release()
	src := jsObject.New()
	src.Set("pull", pull)
	stream := js.Global().Get("ReadableStream").New(src)
	r := newStreamReader(context.Background(), stream)
	// A small buffer makes the reader keep the rest of a chunk for the next Read.
	var out []byte
	buf := make([]byte, 3)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(out) != "hello, streaming world" {
		t.Fatalf("read %q", out)
	}
	r.Close()
}

func TestBytesCrossBothWays(t *testing.T) {
	b := []byte{0, 1, 2, 250, 255}
	u := bytesToJS(b)
	if got := bytesFromJS(u); string(got) != string(b) {
		t.Fatalf("Uint8Array: %v", got)
	}
	if got := bytesFromJS(u.Get("buffer")); string(got) != string(b) {
		t.Fatalf("ArrayBuffer: %v", got)
	}
}
