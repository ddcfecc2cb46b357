package s3verify_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/s3verify"
)

func TestFailWritesS3ErrorDocument(t *testing.T) {
	v := &s3verify.Verifier{}
	cases := []struct {
		name, method string
		err          error
		status       int
		body         []string
		notInBody    string
	}{
		{"typed", http.MethodGet, &blobcred.Error{Status: 403, Code: "AccessDenied", Message: "no"}, 403,
			[]string{"<Code>AccessDenied</Code>", "<Message>no</Message>", "<Resource>/b/k</Resource>"}, ""},
		{"wrapped", http.MethodPut, errors.Join(errors.New("ctx"), blobcred.ErrPayloadMismatch), 400,
			[]string{"<Code>XAmzContentSHA256Mismatch</Code>"}, ""},
		// An untyped error is the server's problem: its text stays in the log.
		{"untyped", http.MethodGet, errors.New("disk /var/x failed"), 500,
			[]string{"<Code>InternalError</Code>"}, "disk"},
		{"head has no body", http.MethodHead, &blobcred.Error{Status: 404, Code: "NoSuchKey", Message: "gone"}, 404, nil, "NoSuchKey"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			v.Fail(w, httptest.NewRequest(c.method, "/b/k", nil), c.err)
			body := w.Body.String()
			if w.Code != c.status || w.Header().Get("x-amz-request-id") == "" {
				t.Fatalf("status %d, request id %q", w.Code, w.Header().Get("x-amz-request-id"))
			}
			for _, want := range c.body {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %s:\n%s", want, body)
				}
			}
			if c.notInBody != "" && strings.Contains(body, c.notInBody) {
				t.Errorf("body shows %q:\n%s", c.notInBody, body)
			}
		})
	}
}

func TestVerifyRefusesAnonymousRequests(t *testing.T) {
	root := make([]byte, blobcred.MinRootBytes)
	v := &s3verify.Verifier{Auth: &blobcred.Authenticator{Root: root}, Bucket: "b", Now: func() time.Time { return time.Unix(1e9, 0) }}
	r := httptest.NewRequest(http.MethodGet, "/s3/b/k", nil)
	_, err := v.Verify(r, r)
	var e *blobcred.Error
	if !errors.As(err, &e) || e.Status != http.StatusForbidden {
		t.Fatalf("anonymous request: %v", err)
	}
}
