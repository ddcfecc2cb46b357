//go:build js && wasm

package cloudflare

import (
	"context"
	"fmt"
	"io"
	"syscall/js"
)

// Helpers for the adapter packages under edge/cloudflare (r2, …) that talk to the
// Worker's bindings directly.

// ReadStream reads a JavaScript ReadableStream of bytes (an R2 object's body, a fetch
// body). Close cancels the stream if it was not read to the end.
func ReadStream(ctx context.Context, stream js.Value) io.ReadCloser {
	return newStreamReader(ctx, stream)
}

// BytesToJS copies b into a new Uint8Array.
func BytesToJS(b []byte) js.Value { return bytesToJS(b) }

// Try runs f and returns a JavaScript exception thrown inside it as an error
// (*JSError).
func Try(f func()) error { return try(f) }

// Object returns a new, empty JavaScript object.
func Object() js.Value { return jsObject.New() }

// StreamWriter writes to a JavaScript WritableStream through its default writer,
// waiting for each chunk to be taken (backpressure).
type StreamWriter struct {
	ctx    context.Context
	writer js.Value
	err    error
}

// NewStreamWriter locks stream (a WritableStream) and returns a writer for it.
func NewStreamWriter(ctx context.Context, stream js.Value) (*StreamWriter, error) {
	var w js.Value
	if err := try(func() { w = stream.Call("getWriter") }); err != nil {
		return nil, err
	}
	return &StreamWriter{ctx: ctx, writer: w}, nil
}

// Write implements io.Writer: one chunk per call.
func (w *StreamWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var pr js.Value
	if err := try(func() { pr = w.writer.Call("write", bytesToJS(p)) }); err != nil {
		w.err = err
		return 0, err
	}
	if _, err := Await(w.ctx, pr); err != nil {
		w.err = fmt.Errorf("stream write: %w", err)
		return 0, w.err
	}
	return len(p), nil
}

// Close closes the stream (the reader sees its end) and waits for it.
func (w *StreamWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	var pr js.Value
	if err := try(func() { pr = w.writer.Call("close") }); err != nil {
		return err
	}
	_, err := Await(w.ctx, pr)
	return err
}

// Abort errors the stream with reason (the reader fails) and does not wait.
func (w *StreamWriter) Abort(reason error) {
	msg := "aborted"
	if reason != nil {
		msg = reason.Error()
	}
	_ = try(func() {
		w.writer.Call("abort", js.Global().Get("Error").New(msg)).Call("catch", noop)
	})
	if w.err == nil {
		w.err = fmt.Errorf("stream aborted: %s", msg)
	}
}
