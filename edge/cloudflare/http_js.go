//go:build js && wasm

package cloudflare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall/js"
)

// serveHTTP serves one HTTP request: args are method, url, headers, body
// (ReadableStream or null) and the ExecutionContext. The promise is resolved when
// the handler returns, or at its first Flush for a streaming response.
func (s *server) serveHTTP(resolve, reject js.Value, args []js.Value) {
	st := &settler{resolve: resolve, reject: reject}
	var w *responseWriter
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if p != http.ErrAbortHandler {
			s.logPanic("HTTP handler", p)
		}
		if w != nil && w.streaming {
			w.writer.Call("abort").Call("catch", noop)
		}
		st.fail(fmt.Errorf("panic: %v", p))
	}()
	if s.w.Handler == nil {
		st.fail(errors.New("fetch: no handler"))
		return
	}
	ctx, cancel := context.WithCancel(withExecutionContext(context.Background(), arg(args, 4)))
	defer cancel()
	req, err := newRequest(ctx, arg(args, 0).String(), arg(args, 1).String(), arg(args, 2).String(), arg(args, 3))
	if err != nil {
		st.fail(err)
		return
	}
	defer req.Body.Close()
	w = &responseWriter{ctx: ctx, header: http.Header{}, settle: st}
	s.w.Handler.ServeHTTP(w, req)
	w.finish()
}

// settler settles the promise of one call once.
type settler struct {
	resolve, reject js.Value
	done            bool
}

func (s *settler) ok(v any) {
	if !s.done {
		s.done = true
		s.resolve.Invoke(v)
	}
}

func (s *settler) fail(err error) {
	if !s.done {
		s.done = true
		s.reject.Invoke(js.Global().Get("Error").New(err.Error()))
	}
}

// newRequest builds the server-side *http.Request for one JavaScript Request.
func newRequest(ctx context.Context, method, rawURL, headers string, body js.Value) (*http.Request, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("request url %q: %w", rawURL, err)
	}
	h := parseHeaders(headers)
	req := &http.Request{
		Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Host: u.Host, RequestURI: u.RequestURI(),
		RemoteAddr: h.Get("Cf-Connecting-Ip"), Body: http.NoBody,
	}
	if body.Type() == js.TypeObject {
		req.Body = newStreamReader(ctx, body)
		req.ContentLength = -1
		if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil {
			req.ContentLength = n
		}
	}
	return req.WithContext(ctx), nil
}

// parseHeaders reads the name "\n" value "\n" form the JavaScript entry sends.
func parseHeaders(s string) http.Header {
	h := http.Header{}
	for s != "" {
		name, rest, ok := strings.Cut(s, "\n")
		if !ok {
			break
		}
		value, rest2, _ := strings.Cut(rest, "\n")
		h.Add(name, value)
		s = rest2
	}
	return h
}

// formatHeaders writes h in the form parseHeaders reads; values that would break it
// (a newline) are dropped, as a Headers object would refuse them.
func formatHeaders(h http.Header) string {
	var b strings.Builder
	for name, values := range h {
		for _, v := range values {
			if strings.ContainsAny(name, "\r\n") || strings.ContainsAny(v, "\r\n") {
				continue
			}
			b.WriteString(name)
			b.WriteByte('\n')
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// streamReader reads a JavaScript ReadableStream of bytes.
type streamReader struct {
	ctx    context.Context
	stream js.Value
	reader js.Value
	buf    []byte
	err    error
	onEOF  func()
}

func newStreamReader(ctx context.Context, stream js.Value) *streamReader {
	return &streamReader{ctx: ctx, stream: stream}
}

func (r *streamReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		if r.reader.IsUndefined() {
			if err := try(func() { r.reader = r.stream.Call("getReader") }); err != nil {
				r.err = err
				return 0, err
			}
		}
		res, err := Await(r.ctx, r.reader.Call("read"))
		if err != nil {
			r.err = err
			return 0, err
		}
		if res.Get("done").Bool() {
			r.err = io.EOF
			if r.onEOF != nil {
				r.onEOF()
			}
			return 0, io.EOF
		}
		chunk := res.Get("value")
		n := chunk.Get("byteLength").Int()
		if n <= len(p) {
			return js.CopyBytesToGo(p, chunk), nil
		}
		r.buf = make([]byte, n)
		js.CopyBytesToGo(r.buf, chunk)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *streamReader) Close() error {
	if r.err == nil {
		r.err = errors.New("read on closed body")
		if !r.reader.IsUndefined() {
			p := r.reader.Call("cancel")
			p.Call("catch", noop) // a failed cancel is of no interest
		} else if r.stream.Type() == js.TypeObject {
			_ = try(func() { r.stream.Call("cancel").Call("catch", noop) })
		}
	}
	if r.onEOF != nil {
		r.onEOF()
		r.onEOF = nil
	}
	return nil
}

// noop is a JavaScript function that does nothing (for .catch of promises nobody
// awaits); it lives as long as the runtime.
var noop = js.FuncOf(func(js.Value, []js.Value) any { return nil })

// streamChunk is how much a streaming response buffers between writes to JavaScript.
const streamChunk = 32 << 10

// responseWriter collects the handler's response. The body is buffered and handed
// to JavaScript as one Uint8Array when the handler returns, unless the handler
// calls Flush: then the response is handed over at once with a ReadableStream body
// (a TransformStream's readable side) that Go writes to as the handler writes.
type responseWriter struct {
	ctx         context.Context
	header      http.Header
	status      int
	wroteHeader bool
	buf         bytes.Buffer
	settle      *settler

	// Streaming, after the first Flush.
	streaming bool
	writer    js.Value // the TransformStream's WritableStreamDefaultWriter
	writeErr  error
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	w.wroteHeader, w.status = true, code
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.writeErr != nil {
		return 0, w.writeErr
	}
	w.buf.Write(p)
	if w.streaming && w.buf.Len() >= streamChunk {
		if err := w.push(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush implements http.Flusher: the first call hands the response to JavaScript
// with a streaming body; every call pushes what is buffered.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.streaming {
		w.streaming = true
		// With a Content-Length, a FixedLengthStream keeps it on the wire (a
		// TransformStream's body goes out chunked, without a length).
		var ts js.Value
		if n, err := strconv.ParseInt(w.header.Get("Content-Length"), 10, 64); err == nil && n >= 0 && jsFixedLength.Type() == js.TypeFunction {
			ts = jsFixedLength.New(float64(n))
		} else {
			ts = jsTransform.New()
		}
		w.writer = ts.Get("writable").Call("getWriter")
		w.settle.ok(w.response(ts.Get("readable")))
	}
	_ = w.push()
}

// FlushError is Flush with the error of a stream JavaScript no longer reads
// (http.ResponseController uses it).
func (w *responseWriter) FlushError() error {
	w.Flush()
	return w.writeErr
}

// push writes the buffer to the stream and waits for the stream to take it.
func (w *responseWriter) push() error {
	if w.writeErr != nil || w.buf.Len() == 0 {
		return w.writeErr
	}
	chunk := bytesToJS(w.buf.Bytes())
	w.buf.Reset()
	if _, err := Await(w.ctx, w.writer.Call("write", chunk)); err != nil {
		w.writeErr = fmt.Errorf("response body: %w", err)
	}
	return w.writeErr
}

func (w *responseWriter) response(body js.Value) js.Value {
	r := jsObject.New()
	r.Set("status", w.status)
	r.Set("headers", formatHeaders(w.header))
	r.Set("body", body)
	return r
}

// finish is called when the handler returned: it hands over the buffered response,
// or ends the stream.
func (w *responseWriter) finish() {
	if w.streaming {
		_ = w.push()
		w.writer.Call("close").Call("catch", noop)
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	body := js.Null()
	if w.buf.Len() > 0 {
		body = bytesToJS(w.buf.Bytes())
	}
	w.settle.ok(w.response(body))
}
