package blobcred

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The SDK's own signer is the oracle: requests it signs must verify, and any change to
// what it signed must not.

const (
	adminID     = "flare-admin"
	adminSecret = "admin-secret-admin-secret-admin-secret"
	endpoint    = "http://127.0.0.1:9000"
)

var testAuth = &Authenticator{Root: testRoot, AdminKeyID: adminID, AdminSecret: adminSecret}

func signer() *v4.Signer {
	return v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
}

type reqOpt func(*http.Request)

// signedRequest builds and signs a client request, then returns it as a server sees it
// (written to the wire and parsed back).
func signedRequest(t *testing.T, id, secret, method, rawURL string, body []byte, at time.Time, opts ...reqOpt) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	sum := sha256.Sum256(body)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	for _, o := range opts {
		o(req)
	}
	err = signer().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret},
		req, req.Header.Get("X-Amz-Content-Sha256"), "s3", "auto", at)
	if err != nil {
		t.Fatal(err)
	}
	return onServer(t, req)
}

func presignedRequest(t *testing.T, id, secret, method, rawURL string, at time.Time, ttl time.Duration) *http.Request {
	t.Helper()
	u, _ := url.Parse(rawURL)
	q := u.Query()
	q.Set("X-Amz-Expires", strconv.Itoa(int(ttl/time.Second)))
	u.RawQuery = q.Encode()
	req, _ := http.NewRequest(method, u.String(), nil)
	signedURL, _, err := signer().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret},
		req, unsignedPayload, "s3", "auto", at)
	if err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(method, signedURL, nil)
	return onServer(t, req)
}

func onServer(t *testing.T, req *http.Request) *http.Request {
	t.Helper()
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		t.Fatal(err)
	}
	sreq, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		t.Fatal(err)
	}
	return sreq
}

// flip changes the character at i to another base64url character.
func flip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("err = %v, want %s", err, code)
	}
}

func TestAuthenticateAcceptsSDKSignatures(t *testing.T) {
	id, secret := mustMint(t, "exec-1", ExecGrants("exec-1", "o/r", true), time.Hour)
	cases := []struct {
		name, method, url string
		body              []byte
		opts              []reqOpt
	}{
		{"get", "GET", endpoint + "/flare/logs/exec-1/exec.ndjson?x-id=GetObject", nil, nil},
		{"put with metadata", "PUT", endpoint + "/flare/logs/exec-1/exec.ndjson?x-id=PutObject", []byte(`{"stream":"stdout"}`),
			[]reqOpt{func(r *http.Request) {
				r.Header.Set("Content-Type", "application/x-ndjson")
				r.Header.Set("X-Amz-Meta-Step", "  build   and test ")
			}}},
		{"list", "GET", endpoint + "/flare?list-type=2&prefix=logs%2Fexec-1%2F&continuation-token=a%2Bb%3D%3D", nil, nil},
		{"escaped key", "GET", endpoint + "/flare/artifacts/exec-1/a%20b%2Bc%E2%80%A6~%21.txt", nil, nil},
		{"multipart part", "PUT", endpoint + "/flare/cache/o/r/big.tar.gz?partNumber=2&uploadId=7&x-id=UploadPart", []byte("part"), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, who := range []struct{ id, secret string }{{id, secret}, {adminID, adminSecret}} {
				r := signedRequest(t, who.id, who.secret, c.method, c.url, c.body, t0, c.opts...)
				p, err := testAuth.Authenticate(r, t0.Add(time.Minute))
				if err != nil {
					t.Fatalf("%s: %v", who.id[:4], err)
				}
				if p.Admin != (who.id == adminID) {
					t.Fatalf("admin = %v", p.Admin)
				}
				if got, err := io.ReadAll(r.Body); err != nil || !bytes.Equal(got, c.body) && len(c.body) > 0 {
					t.Fatalf("body %q, %v", got, err)
				}
			}
		})
	}
}

func TestAuthenticateRejectsTampering(t *testing.T) {
	id, secret := mustMint(t, "exec-1", ExecGrants("exec-1", "o/r", true), time.Hour)
	otherID, _ := mustMint(t, "exec-2", ExecGrants("exec-2", "o/r", true), time.Hour)
	base := func() *http.Request {
		return signedRequest(t, id, secret, "PUT", endpoint+"/flare/logs/exec-1/exec.ndjson", []byte("hello"), t0,
			func(r *http.Request) { r.Header.Set("X-Amz-Meta-A", "1") })
	}
	cases := []struct {
		name   string
		mutate func(r *http.Request)
		code   string
	}{
		{"path", func(r *http.Request) { r.URL.Path = "/flare/logs/exec-2/exec.ndjson"; r.URL.RawPath = "" }, "SignatureDoesNotMatch"},
		{"path encoding", func(r *http.Request) { r.URL.RawPath = "/flare/logs/exec-1/exec%2Endjson" }, "SignatureDoesNotMatch"},
		{"method", func(r *http.Request) { r.Method = "DELETE" }, "SignatureDoesNotMatch"},
		{"query", func(r *http.Request) { r.URL.RawQuery = "uploads" }, "SignatureDoesNotMatch"},
		{"host", func(r *http.Request) { r.Host = "evil:9000" }, "SignatureDoesNotMatch"},
		{"signed header", func(r *http.Request) { r.Header.Set("X-Amz-Meta-A", "2") }, "SignatureDoesNotMatch"},
		{"payload hash", func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", unsignedPayload) }, "SignatureDoesNotMatch"},
		{"unsigned x-amz header", func(r *http.Request) { r.Header.Set("X-Amz-Copy-Source", "/flare/logs/exec-2/x") }, "AccessDenied"},
		{"signature", func(r *http.Request) {
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:len(a)-1]+string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", a[len(a)-1])+1)%16]))
		}, "SignatureDoesNotMatch"},
		{"other execution's key id", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), id, otherID, 1))
		}, "SignatureDoesNotMatch"},
		{"forged key id", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), id, flip(id, 20), 1))
		}, "InvalidAccessKeyId"},
		{"unknown key id", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), id, "AKIAIOSFODNN7EXAMPLE", 1))
		}, "InvalidAccessKeyId"},
		{"anonymous", func(r *http.Request) { r.Header.Del("Authorization") }, "AccessDenied"},
		{"streaming payload", func(r *http.Request) {
			r.Header.Set("X-Amz-Content-Sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
		}, "NotImplemented"},
		{"two mechanisms", func(r *http.Request) { r.URL.RawQuery = "X-Amz-Signature=00" }, "InvalidArgument"},
		{"malformed header", func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x") }, "AuthorizationHeaderMalformed"},
	}
	if _, err := testAuth.Authenticate(base(), t0); err != nil {
		t.Fatalf("untampered request: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := base()
			c.mutate(r)
			_, err := testAuth.Authenticate(r, t0)
			wantCode(t, err, c.code)
		})
	}
}

func TestAuthenticateChecksPayload(t *testing.T) {
	id, secret := mustMint(t, "exec-1", ExecGrants("exec-1", "o/r", true), time.Hour)
	r := signedRequest(t, id, secret, "PUT", endpoint+"/flare/logs/exec-1/x", []byte("hello"), t0)
	r.Body = io.NopCloser(strings.NewReader("HELLO")) // same length, other bytes
	if _, err := testAuth.Authenticate(r, t0); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(r.Body)
	if !errors.Is(err, ErrPayloadMismatch) {
		t.Fatalf("reading a tampered body: err = %v, want ErrPayloadMismatch", err)
	}
}

func TestAuthenticateTime(t *testing.T) {
	id, secret := mustMint(t, "exec-1", ExecGrants("exec-1", "o/r", true), time.Hour)
	get := func(at time.Time) *http.Request {
		return signedRequest(t, id, secret, "GET", endpoint+"/flare/logs/exec-1/x", nil, at)
	}
	if _, err := testAuth.Authenticate(get(t0), t0.Add(14*time.Minute)); err != nil {
		t.Fatalf("14 min skew: %v", err)
	}
	_, err := testAuth.Authenticate(get(t0), t0.Add(16*time.Minute))
	wantCode(t, err, "RequestTimeTooSkewed")
	_, err = testAuth.Authenticate(get(t0.Add(time.Hour)), t0.Add(time.Hour))
	wantCode(t, err, "AccessDenied") // the credential itself expired at t0+1h
	if !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v, want an expiry message", err)
	}
}

func TestAuthenticatePresigned(t *testing.T) {
	id, secret := mustMint(t, "exec-1", ExecGrants("exec-1", "o/r", true), time.Hour)
	u := endpoint + "/flare/artifacts/exec-1/shot.gif?response-content-type=image%2Fgif"
	r := presignedRequest(t, id, secret, "GET", u, t0, 5*time.Minute)
	if _, err := testAuth.Authenticate(r, t0.Add(4*time.Minute)); err != nil {
		t.Fatalf("valid presigned URL: %v", err)
	}
	_, err := testAuth.Authenticate(presignedRequest(t, id, secret, "GET", u, t0, 5*time.Minute), t0.Add(5*time.Minute))
	wantCode(t, err, "AccessDenied")

	r = presignedRequest(t, id, secret, "GET", u, t0, 5*time.Minute)
	r.URL.Path = "/flare/artifacts/exec-1/other.gif"
	r.URL.RawPath = ""
	_, err = testAuth.Authenticate(r, t0)
	wantCode(t, err, "SignatureDoesNotMatch")

	r = presignedRequest(t, id, secret, "GET", u, t0, 5*time.Minute)
	q := r.URL.Query()
	q.Set("X-Amz-Expires", "86400")
	r.URL.RawQuery = q.Encode()
	_, err = testAuth.Authenticate(r, t0.Add(10*time.Minute))
	wantCode(t, err, "SignatureDoesNotMatch")
}

func TestAuthorize(t *testing.T) {
	p := Principal{Claims: Claims{Exec: "e1", Grants: []Grant{{"logs/e1/", ReadWrite}, {"cache/o/r/", Read}}}}
	req := func(method, target string, hdr ...string) *http.Request {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: s3\r\n" + strings.Join(hdr, "") + "\r\n")))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	allowed := []*http.Request{
		req("GET", "/flare/logs/e1/exec.ndjson?x-id=GetObject"),
		req("HEAD", "/flare/logs/e1/exec.ndjson"),
		req("PUT", "/flare/logs/e1/exec-2.ndjson?x-id=PutObject"),
		req("DELETE", "/flare/logs/e1/exec-2.ndjson"),
		req("POST", "/flare/logs/e1/big?uploads"),
		req("PUT", "/flare/logs/e1/big?partNumber=1&uploadId=9"),
		req("POST", "/flare/logs/e1/big?uploadId=9"),
		req("DELETE", "/flare/logs/e1/big?uploadId=9"),
		req("GET", "/flare?list-type=2&prefix=logs%2Fe1%2F"),
		req("GET", "/flare/?list-type=2&prefix=logs/e1/exec&delimiter=/"),
		req("GET", "/flare/cache/o/r/k.tar.gz"),
		req("GET", "/flare/logs/e1/a%20b"),
	}
	for _, r := range allowed {
		if err := Authorize(p, r, "flare"); err != nil {
			t.Errorf("%s %s: %v", r.Method, r.RequestURI, err)
		}
	}
	refused := []*http.Request{
		req("GET", "/flare/logs/e2/exec.ndjson"),
		req("GET", "/flare/logs/e1/../e2/exec.ndjson"),
		req("GET", "/flare/logs/e1/%2e%2e/e2/exec.ndjson"),
		req("GET", "/flare/logs/e1/%2E%2E%2Fe2%2Fexec.ndjson"),
		req("GET", "/flare/logs/e1/%252e%252e/e2/exec.ndjson"),
		req("GET", "/flare/logs/e1//exec.ndjson"),
		req("GET", "/flare/logs%2Fe1%2F..%2Fe2%2Fx"),
		req("GET", "/flare/logs/e1/.%2e/e2/x"),
		req("GET", "/flare/logs/e1/..%5ce2"),
		req("GET", "/other/logs/e1/exec.ndjson"),
		req("GET", "/flare/logs/e1"),
		req("PUT", "/flare/cache/o/r/k.tar.gz"),
		req("PUT", "/flare/logs/e1/x", "X-Amz-Copy-Source: /flare/logs/e2/secret\r\n"),
		req("PUT", "/flare/logs/e1/x?partNumber=1&uploadId=9", "X-Amz-Copy-Source: /flare/logs/e2/secret\r\n"),
		req("GET", "/flare/logs/e1/x?versionId=3"),
		req("GET", "/flare/logs/e1/x?acl"),
		req("PUT", "/flare/logs/e1/x?versioning"),
		req("GET", "/flare/logs/e1/x?x-id=1&x-id=2"),
		req("GET", "/flare?list-type=2&prefix=logs%2Fe1"),
		req("GET", "/flare?list-type=2&prefix=logs%2F"),
		req("GET", "/flare?list-type=2"),
		req("GET", "/flare?list-type=2&prefix=logs%2Fe1%2F&prefix=logs%2Fe2%2F"),
		req("GET", "/flare?uploads"),
		req("GET", "/flare?location"),
		req("POST", "/flare?delete"),
		req("PUT", "/flare"),
		req("DELETE", "/flare"),
		req("HEAD", "/flare"),
		req("GET", "/"),
		req("POST", "/flare/logs/e1/x"),
		req("POST", "/flare?uploads"),
	}
	for _, r := range refused {
		if err := Authorize(p, r, "flare"); err == nil {
			t.Errorf("%s %s allowed", r.Method, r.RequestURI)
		}
	}
	if err := Authorize(Principal{Admin: true}, req("DELETE", "/flare"), "flare"); err != nil {
		t.Errorf("admin refused: %v", err)
	}
}
