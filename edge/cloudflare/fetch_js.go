//go:build js && wasm

package cloudflare

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall/js"
)

// In workerd, net/http's own js/wasm transport panics ("Illegal invocation"). The
// Worker does not link net/http's client at all: any use of *http.Client (its Do
// reaches http.DefaultTransport, an *http.Transport with TLS, x509 and the dialer)
// adds about 1.1 MB gzip to the bundle (specs/cloudflare.md). Outbound calls go
// through a FetchTransport used as an http.RoundTripper (or its Do). Code that must
// have an *http.Client calls InstallDefaultTransport and pays for it.

// InstallDefaultTransport makes http.DefaultTransport (and so http.DefaultClient,
// http.Get and SDKs given no client) use the Fetch API. It links net/http's client.
func InstallDefaultTransport() {
	http.DefaultTransport = &FetchTransport{}
}

// FetchTransport is an http.RoundTripper over the Fetch API of the Worker's runtime:
// the global fetch, or the fetch method of a Durable Object stub or a service
// binding. The request body is buffered; the response body streams.
type FetchTransport struct {
	// Fetcher is the object whose fetch method is called; the zero Value means
	// globalThis.
	Fetcher js.Value
	// Redirect is the Fetch redirect mode: "follow" (default), "manual" or "error".
	Redirect string
}

// RoundTrip implements http.RoundTripper.
func (t *FetchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	init := jsObject.New()
	init.Set("method", req.Method)
	h := jsHeaders.New()
	for name, values := range req.Header {
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length", "Connection", "Transfer-Encoding":
			continue
		}
		for _, v := range values {
			if err := try(func() { h.Call("append", name, v) }); err != nil {
				return nil, fmt.Errorf("fetch %s: header %s: %w", req.URL.Redacted(), name, err)
			}
		}
	}
	init.Set("headers", h)
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("fetch %s: request body: %w", req.URL.Redacted(), err)
		}
		// A GET or HEAD with a body (even an empty one) makes fetch throw.
		if len(b) > 0 || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
			init.Set("body", bytesToJS(b))
		}
	}
	redirect := t.Redirect
	if redirect == "" {
		redirect = "follow"
	}
	init.Set("redirect", redirect)
	stop := func() bool { return false }
	if ctx.Done() != nil {
		ctrl := jsAbort.New()
		init.Set("signal", ctrl.Get("signal"))
		stop = context.AfterFunc(ctx, func() { ctrl.Call("abort") })
	}

	fetcher := t.Fetcher
	if fetcher.IsUndefined() {
		fetcher = js.Global()
	}
	var p js.Value
	if err := try(func() { p = fetcher.Call("fetch", req.URL.String(), init) }); err != nil {
		stop()
		return nil, fmt.Errorf("fetch %s: %w", req.URL.Redacted(), err)
	}
	res, err := Await(ctx, p)
	if err != nil {
		stop()
		return nil, fmt.Errorf("fetch %s: %w", req.URL.Redacted(), err)
	}
	return newResponse(ctx, req, res, stop), nil
}

// newResponse converts a JavaScript Response.
func newResponse(ctx context.Context, req *http.Request, res js.Value, stop func() bool) *http.Response {
	code := res.Get("status").Int()
	resp := &http.Response{
		Status:     strconv.Itoa(code) + " " + res.Get("statusText").String(),
		StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Request: req, ContentLength: -1, Body: http.NoBody,
	}
	headers := res.Get("headers")
	entries := jsArray.Call("from", headers)
	for i, n := 0, entries.Length(); i < n; i++ {
		kv := entries.Index(i)
		resp.Header.Add(kv.Index(0).String(), kv.Index(1).String())
	}
	if sc := headers.Get("getSetCookie"); sc.Type() == js.TypeFunction {
		// Headers iteration joins Set-Cookie values; getSetCookie keeps them apart.
		resp.Header.Del("Set-Cookie")
		cookies := headers.Call("getSetCookie")
		for i, n := 0, cookies.Length(); i < n; i++ {
			resp.Header.Add("Set-Cookie", cookies.Index(i).String())
		}
	}
	if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil {
		resp.ContentLength = n
	}
	if body := res.Get("body"); body.Type() == js.TypeObject && req.Method != http.MethodHead {
		r := newStreamReader(ctx, body)
		r.onEOF = func() { stop() }
		resp.Body = r
	} else {
		stop()
	}
	return resp
}

// Do sends one request, as (*http.Client).Do would but without following redirects
// itself (fetch does, unless Redirect says otherwise), cookies or a client timeout
// (use the request's context).
func (t *FetchTransport) Do(req *http.Request) (*http.Response, error) { return t.RoundTrip(req) }

// HTTPClient returns a client whose requests go through fetcher's fetch method (a
// Durable Object stub, a service binding), or the global fetch for the zero Value.
// Using it links net/http's client (see InstallDefaultTransport).
func HTTPClient(fetcher js.Value) *http.Client {
	return &http.Client{Transport: &FetchTransport{Fetcher: fetcher}}
}

var _ http.RoundTripper = (*FetchTransport)(nil)
