package edge

import "net/http"

// HTTPDoer sends one HTTP request: an *http.Client natively; on Cloudflare the fetch
// transport, because linking net/http's client (http.Client.Do reaches
// http.DefaultTransport, and with it crypto/tls and x509) costs the Worker about
// 1.1 MB of its gzip budget (specs/cloudflare.md).
type HTTPDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// defaultHTTPClient is Deps.HTTPClient's default: http.DefaultClient natively
// (httpclient_native.go), none in the js/wasm build.
var defaultHTTPClient HTTPDoer
