// Package s3verify is the request side every S3 endpoint of the stack shares: the
// Worker's /s3 endpoint over R2 (edge/cloudflare/s3api) and the embedded store of
// `flare up` (edge/local/s3store). It verifies a request's AWS Signature V4 against the
// admin or a scoped credential (edge/blobcred), checks the request stays inside the
// credential's grants, and writes S3's XML error document for a refusal. What differs
// between the two, the storage behind the endpoint, stays in the platform's folder.
//
// It builds for js/wasm: the Worker links it.
package s3verify

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
)

// Verifier checks requests for one bucket and answers refusals. Use it by pointer: it
// numbers its responses.
type Verifier struct {
	Auth   *blobcred.Authenticator
	Bucket string
	Now    func() time.Time // nil: time.Now
	// Ended reports whether an execution is over. A scoped credential of an ended
	// execution writes nothing more (its log is served as immutable then), though it
	// has not expired yet. nil: no check (tests of the signature alone).
	Ended Ended

	reqID atomic.Uint64
}

// Ended looks up whether execution exec has reached a terminal status. An execution
// it does not know counts as ended: credentials are minted only for existing ones.
type Ended func(ctx context.Context, exec string) (bool, error)

// Verify checks that signed carries a valid signature and that routed, the same request
// as the server routes it (its path without any mount prefix; signed itself when there
// is none), stays inside the signer's grants on v.Bucket. The signature covers the
// path as sent, so it is checked on signed; the grants name keys, so they are checked on
// routed. When the payload hash is signed, signed.Body (and routed.Body) become a reader
// that fails at EOF on a mismatch: read the body from them.
func (v *Verifier) Verify(signed, routed *http.Request) (blobcred.Principal, error) {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	p, err := v.authenticate(signed, now())
	if err != nil {
		return p, err
	}
	routed.Body = signed.Body
	if err := blobcred.Authorize(p, routed, v.Bucket); err != nil {
		return p, err
	}
	return p, v.checkLive(p, routed)
}

// checkLive refuses a scoped credential's writes once its execution has ended. Reads
// stay allowed until the credential expires: they change nothing. A failed lookup
// refuses too (503, the client retries), so an outage cannot reopen a finished log.
func (v *Verifier) checkLive(p blobcred.Principal, r *http.Request) error {
	if p.Admin || v.Ended == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	ended, err := v.Ended(r.Context(), p.Claims.Exec)
	if err != nil {
		return &blobcred.Error{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable",
			Message: "cannot tell whether the credential's execution has ended; try again"}
	}
	if ended {
		return &blobcred.Error{Status: http.StatusForbidden, Code: "AccessDenied",
			Message: "execution " + p.Claims.Exec + " has ended: its credentials write nothing more"}
	}
	return nil
}

// authenticate verifies r's signature. Cloudflare rewrites Accept-Encoding before a
// Worker sees a request ("br, gzip"), and S3 clients sign that header (aws-sdk-go-v2
// sends "identity" and lists it in SignedHeaders): a signature that does not match as
// received is checked again with the value the clients send. The header says nothing
// about what the request may do, so accepting either value grants nothing more.
func (v *Verifier) authenticate(r *http.Request, now time.Time) (blobcred.Principal, error) {
	p, err := v.Auth.Authenticate(r, now)
	var e *blobcred.Error
	if err == nil || !errors.As(err, &e) || e.Code != "SignatureDoesNotMatch" || !signsHeader(r, "accept-encoding") {
		return p, err
	}
	received, had := r.Header["Accept-Encoding"]
	r.Header.Set("Accept-Encoding", "identity")
	p2, err2 := v.Auth.Authenticate(r, now)
	if had {
		r.Header["Accept-Encoding"] = received
	} else {
		r.Header.Del("Accept-Encoding")
	}
	if err2 != nil {
		return p, err
	}
	return p2, nil
}

// signsHeader reports whether r's SigV4 signature (header or presigned form) covers
// the header name (lower case).
func signsHeader(r *http.Request, name string) bool {
	list := r.URL.Query().Get("X-Amz-SignedHeaders")
	if authz := r.Header.Get("Authorization"); authz != "" {
		_, rest, _ := strings.Cut(authz, "SignedHeaders=")
		list, _, _ = strings.Cut(rest, ",")
	}
	for _, h := range strings.Split(list, ";") {
		if strings.TrimSpace(h) == name {
			return true
		}
	}
	return false
}

// errorDoc is S3's XML error document.
type errorDoc struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource,omitempty"`
	RequestID string   `xml:"RequestId"`
}

// Fail answers r with err as S3 does: the status and code of a *blobcred.Error in err's
// chain, else 500 InternalError (the cause is for the log, not the client), as an XML
// error document (no body for HEAD), with a request id.
func (v *Verifier) Fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *blobcred.Error
	if !errors.As(err, &e) {
		e = &blobcred.Error{Status: http.StatusInternalServerError, Code: "InternalError", Message: "We encountered an internal error. Please try again."}
	}
	id := strconv.FormatUint(v.reqID.Add(1), 16)
	w.Header().Set("x-amz-request-id", id)
	if r.Method == http.MethodHead {
		w.WriteHeader(e.Status)
		return
	}
	body, _ := xml.Marshal(errorDoc{Code: e.Code, Message: e.Message, Resource: r.URL.Path, RequestID: id})
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.Status)
	io.WriteString(w, xml.Header)
	w.Write(body)
}
