package s3store_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/blobs"
	"github.com/flare-dispatch/flare-dispatch/edge/local/s3store"
)

const (
	adminID     = "flare-admin"
	adminSecret = "admin-secret-admin-secret-admin-secret"
)

var root = []byte("0123456789abcdef0123456789abcdef")

// fakeClock is a settable clock shared by the store and the test.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type harness struct {
	t     *testing.T
	dir   string
	store *s3store.Store
	srv   *httptest.Server
	clock *fakeClock
}

func start(t *testing.T, dir string, clock *fakeClock) *harness {
	t.Helper()
	st, err := s3store.New(dir, root, adminID, adminSecret, s3store.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(st.Handler())
	t.Cleanup(func() { srv.Close(); st.Close() })
	return &harness{t: t, dir: dir, store: st, srv: srv, clock: clock}
}

func newHarness(t *testing.T) *harness { return start(t, t.TempDir(), newClock()) }

// client returns a blobs client. The SDK signs with the real clock; the store's clock
// starts at real time and only moves forward when a test advances it.
func (h *harness) client(id, secret string) *blobs.Client {
	h.t.Helper()
	c, err := blobs.New(h.srv.URL, "flare", id, secret, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) admin() *blobs.Client { return h.client(adminID, adminSecret) }

func (h *harness) scoped(exec string, ttl time.Duration) *blobs.Client {
	id, secret, err := blobcred.Mint(root, exec, blobcred.ExecGrants(exec, "acme/web", false), ttl, h.clock.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return h.client(id, secret)
}

func put(t *testing.T, c *blobs.Client, key, body string) error {
	t.Helper()
	return c.Put(context.Background(), key, strings.NewReader(body), edge.BlobMeta{ContentType: "text/plain"})
}

func get(t *testing.T, c *blobs.Client, key string) (string, error) {
	t.Helper()
	rc, _, err := c.Get(context.Background(), key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// wantS3Error checks an SDK error's HTTP status and S3 error code.
func wantS3Error(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *awshttp.ResponseError
	var api smithy.APIError
	if !errors.As(err, &re) || !errors.As(err, &api) {
		t.Fatalf("err = %v, want HTTP %d %s", err, status, code)
	}
	if re.HTTPStatusCode() != status || api.ErrorCode() != code {
		t.Fatalf("got HTTP %d %s (%v), want %d %s", re.HTTPStatusCode(), api.ErrorCode(), err, status, code)
	}
}

func TestScopedCredentialStaysInsideItsGrants(t *testing.T) {
	h := newHarness(t)
	agent := h.scoped("exec-1", time.Hour)
	ctx := context.Background()
	for _, k := range []string{"logs/exec-1/exec.ndjson", "logs/exec-1/exec-2.ndjson", "artifacts/exec-1/report/index.html"} {
		if err := put(t, agent, k, "hello "+k); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		if got, err := get(t, agent, k); err != nil || got != "hello "+k {
			t.Fatalf("get %s = %q, %v", k, got, err)
		}
	}
	list, err := agent.List(ctx, "logs/exec-1/")
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %v, %v", list, err)
	}
	if err := agent.Delete(ctx, "logs/exec-1/exec-2.ndjson"); err != nil {
		t.Fatal(err)
	}
	if err := put(t, h.admin(), "cache/acme/web/node.tar.gz", "cached"); err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, agent, "cache/acme/web/node.tar.gz"); err != nil || got != "cached" {
		t.Fatalf("read of the repo cache = %q, %v", got, err)
	}

	refused := map[string]func() error{
		"put other execution's logs": func() error { return put(t, agent, "logs/exec-2/exec.ndjson", "x") },
		"get other execution's logs": func() error { _, err := get(t, agent, "logs/exec-2/exec.ndjson"); return err },
		"put prefix sibling":         func() error { return put(t, agent, "logs/exec-10/exec.ndjson", "x") },
		"write read-only cache":      func() error { return put(t, agent, "cache/acme/web/node.tar.gz", "poison") },
		"read other repo's cache":    func() error { _, err := get(t, agent, "cache/acme/api/node.tar.gz"); return err },
		"dot-dot escape":             func() error { return put(t, agent, "logs/exec-1/../exec-2/exec.ndjson", "x") },
		"list everything":            func() error { _, err := agent.List(ctx, ""); return err },
		"list all logs":              func() error { _, err := agent.List(ctx, "logs/"); return err },
		"list prefix sibling":        func() error { _, err := agent.List(ctx, "logs/exec-1"); return err },
		"delete other execution's":   func() error { return agent.Delete(ctx, "logs/exec-2/exec.ndjson") },
		"copy from another execution": func() error {
			_, err := agent.S3().CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("flare"), Key: aws.String("logs/exec-1/stolen"),
				CopySource: aws.String("flare/logs/exec-2/exec.ndjson")})
			return err
		},
		"list buckets": func() error { _, err := agent.S3().ListBuckets(ctx, &s3.ListBucketsInput{}); return err },
		"delete many": func() error {
			_, err := agent.S3().DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("flare"),
				Delete: &types.Delete{Objects: []types.ObjectIdentifier{{Key: aws.String("logs/exec-2/exec.ndjson")}}}})
			return err
		},
	}
	for name, f := range refused {
		t.Run(name, func(t *testing.T) { wantS3Error(t, f(), 403, "AccessDenied") })
	}
}

func TestOtherExecutionsCredentialIsRefused(t *testing.T) {
	h := newHarness(t)
	if err := put(t, h.scoped("exec-1", time.Hour), "logs/exec-1/exec.ndjson", "secret log"); err != nil {
		t.Fatal(err)
	}
	_, err := get(t, h.scoped("exec-2", time.Hour), "logs/exec-1/exec.ndjson")
	wantS3Error(t, err, 403, "AccessDenied")
}

func TestExpiredCredentialIsRefused(t *testing.T) {
	h := newHarness(t)
	agent := h.scoped("exec-1", 10*time.Minute)
	if err := put(t, agent, "logs/exec-1/exec.ndjson", "x"); err != nil {
		t.Fatal(err)
	}
	// The SDK signs with the real clock; move the store's clock past the credential's
	// expiry but within the 15-minute signing skew, so only the expiry can refuse.
	h.clock.Advance(11 * time.Minute)
	_, err := get(t, agent, "logs/exec-1/exec.ndjson")
	wantS3Error(t, err, 403, "AccessDenied")
	if !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v, want it to say expired", err)
	}
}

func TestBadSignatureIsRefused(t *testing.T) {
	h := newHarness(t)
	id, _, err := blobcred.Mint(root, "exec-1", blobcred.ExecGrants("exec-1", "acme/web", false), time.Hour, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	err = put(t, h.client(id, "not-the-derived-secret-not-the-derived-secret"), "logs/exec-1/exec.ndjson", "x")
	wantS3Error(t, err, 403, "SignatureDoesNotMatch")
	err = put(t, h.client(adminID, "wrong-admin-secret-wrong"), "logs/exec-1/exec.ndjson", "x")
	wantS3Error(t, err, 403, "SignatureDoesNotMatch")
	err = put(t, h.client("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), "logs/exec-1/exec.ndjson", "x")
	wantS3Error(t, err, 403, "InvalidAccessKeyId")
}

// rawRequest signs a request for exactly the given escaped path with the SDK's signer
// (so no client-side escaping interferes) and returns the response status and S3 code.
func rawRequest(t *testing.T, h *harness, id, secret, method, escapedPath, body string) (int, string) {
	t.Helper()
	u, err := url.Parse(h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Opaque = "//" + u.Host + escapedPath // keep the path byte for byte
	req, err := http.NewRequest(method, u.String(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = "//" + u.Host + escapedPath
	sum := sha256.Sum256([]byte(body))
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err := signer.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret},
		req, hex.EncodeToString(sum[:]), "s3", "auto", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Code string }
	b, _ := io.ReadAll(resp.Body)
	_ = xml.Unmarshal(b, &e)
	return resp.StatusCode, e.Code
}

func TestPathTricksCannotEscapeTheGrant(t *testing.T) {
	h := newHarness(t)
	if err := put(t, h.admin(), "logs/exec-2/exec.ndjson", "other"); err != nil {
		t.Fatal(err)
	}
	id, secret, err := blobcred.Mint(root, "exec-1", blobcred.ExecGrants("exec-1", "acme/web", false), time.Hour, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if status, code := rawRequest(t, h, id, secret, "PUT", "/flare/logs/exec-1/ok.ndjson", "fine"); status != 200 {
		t.Fatalf("control request: %d %s", status, code)
	}
	for _, p := range []string{
		"/flare/logs/exec-1/../exec-2/exec.ndjson",
		"/flare/logs/exec-1/%2e%2e/exec-2/exec.ndjson",
		"/flare/logs/exec-1/%2E%2E%2Fexec-2%2Fexec.ndjson",
		"/flare/logs%2Fexec-1%2F..%2Fexec-2%2Fexec.ndjson",
		"/flare/logs/exec-1/%252e%252e/exec-2/exec.ndjson",
		"/flare/logs/exec-1/.%2e/exec-2/exec.ndjson",
		"/flare/logs/exec-1/..%5cexec-2%5cexec.ndjson",
		"/flare/logs/exec-1//exec.ndjson",
		"/flare/logs/exec-1/./exec.ndjson",
		"/flare/logs/exec-1/%00",
		"/flare/logs/exec-1",
		"/flare//logs/exec-1/x",
		"/flare/logs/exec-2/exec.ndjson",
		"/other-bucket/logs/exec-1/x",
	} {
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			status, code := rawRequest(t, h, id, secret, method, p, "")
			if status != 403 || code != "AccessDenied" {
				t.Errorf("%s %s: %d %q, want 403 AccessDenied", method, p, status, code)
			}
		}
	}
	if got, err := get(t, h.admin(), "logs/exec-2/exec.ndjson"); err != nil || got != "other" {
		t.Fatalf("other execution's log changed: %q, %v", got, err)
	}
}

func TestPresignedGet(t *testing.T) {
	h := newHarness(t)
	agent := h.scoped("exec-1", time.Hour)
	if err := put(t, agent, "artifacts/exec-1/shot.gif", "GIF89a"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, err := agent.PresignGet(ctx, "artifacts/exec-1/shot.gif", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	status := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := status(u); code != 200 || body != "GIF89a" {
		t.Fatalf("presigned GET: %d %q", code, body)
	}
	tampered := strings.Replace(u, "shot.gif", "shot.png", 1)
	if code, body := status(tampered); code != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Fatalf("tampered presigned GET: %d %q", code, body)
	}
	other, _ := h.scoped("exec-2", time.Hour).PresignGet(ctx, "artifacts/exec-1/shot.gif", 5*time.Minute)
	if code, body := status(other); code != 403 || !strings.Contains(body, "AccessDenied") {
		t.Fatalf("other execution's presigned GET: %d %q", code, body)
	}
	h.clock.Advance(6 * time.Minute)
	if code, body := status(u); code != 403 || !strings.Contains(body, "expired") {
		t.Fatalf("expired presigned GET: %d %q", code, body)
	}
}

func TestAnonymousRequestsAreRefused(t *testing.T) {
	h := newHarness(t)
	for _, target := range []string{"/", "/flare", "/flare/logs/exec-1/exec.ndjson"} {
		resp, err := http.Get(h.srv.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			XMLName xml.Name `xml:"Error"`
			Code    string
		}
		if resp.StatusCode != 403 || xml.Unmarshal(b, &e) != nil || e.Code != "AccessDenied" ||
			resp.Header.Get("Content-Type") != "application/xml" {
			t.Fatalf("GET %s: %d %s %q", target, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
}

func TestTamperedBodyIsNotStored(t *testing.T) {
	h := newHarness(t)
	req, err := http.NewRequest("PUT", h.srv.URL+"/flare/logs/exec-1/exec.ndjson", strings.NewReader("good"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("good"))
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err := signer.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: adminID, SecretAccessKey: adminSecret},
		req, hex.EncodeToString(sum[:]), "s3", "auto", time.Now()); err != nil {
		t.Fatal(err)
	}
	req.Body = io.NopCloser(strings.NewReader("evil")) // same length, signed header intact
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "BadDigest") {
		t.Fatalf("tampered body: %d %s", resp.StatusCode, b)
	}
	if _, err := h.admin().Head(context.Background(), "logs/exec-1/exec.ndjson"); !errors.Is(err, edge.ErrBlobNotFound) {
		t.Fatalf("object after a tampered upload: %v", err)
	}
}

func TestStreamingPayloadIsRefused(t *testing.T) {
	h := newHarness(t)
	req, _ := http.NewRequest("PUT", h.srv.URL+"/flare/logs/exec-1/x", strings.NewReader("4\r\nbody\r\n0\r\n\r\n"))
	req.Header.Set("X-Amz-Content-Sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	_ = signer.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: adminID, SecretAccessKey: adminSecret},
		req, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "s3", "auto", time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 501 {
		t.Fatalf("aws-chunked upload: %d, want 501", resp.StatusCode)
	}
}

func TestPersistsAcrossRestart(t *testing.T) {
	dir, clock := t.TempDir(), newClock()
	h := start(t, dir, clock)
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16) // 12 MiB: goes multipart
	want := map[string]string{
		"logs/exec-1/exec.ndjson":     `{"stream":"stdout","line":"hi"}` + "\n",
		"logs/exec-1/exec-2.ndjson":   "",
		"artifacts/exec-1/a/b/c.html": "<p>deep</p>",
		"a":                           "file a",
		"a/b":                         "file under a",
	}
	admin := h.admin()
	for k, v := range want {
		if err := admin.Put(ctx, k, strings.NewReader(v), edge.BlobMeta{ContentType: "text/x-test", Metadata: map[string]string{"step": "build"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.Put(ctx, "cache/acme/web/big.tar.gz", bytes.NewReader(big), edge.BlobMeta{Size: int64(len(big))}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Put(ctx, "cache/acme/web/big2.tar.gz", io.MultiReader(bytes.NewReader(big)), edge.BlobMeta{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	delete(want, "a")
	h.srv.Close()
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}

	h2 := start(t, dir, clock)
	admin = h2.admin()
	for k, v := range want {
		rc, meta, err := admin.Get(ctx, k)
		if err != nil {
			t.Fatalf("after restart, get %s: %v", k, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != v || meta.ContentType != "text/x-test" || meta.Metadata["step"] != "build" {
			t.Fatalf("after restart, %s = %q %+v", k, b, meta)
		}
	}
	for _, k := range []string{"cache/acme/web/big.tar.gz", "cache/acme/web/big2.tar.gz"} {
		got, err := get(t, admin, k)
		if err != nil || got != string(big) {
			t.Fatalf("after restart, %s: %d bytes, %v", k, len(got), err)
		}
	}
	if _, err := admin.Head(ctx, "a"); !errors.Is(err, edge.ErrBlobNotFound) {
		t.Fatalf("deleted object came back: %v", err)
	}
	all, err := admin.List(ctx, "")
	if err != nil || len(all) != len(want)+2 {
		t.Fatalf("after restart, list = %v, %v", all, err)
	}
}

func TestETagIsTheContentMD5(t *testing.T) {
	h := newHarness(t)
	admin := h.admin()
	ctx := context.Background()
	for _, size := range []int{0, 1000, 12 << 20} {
		body := bytes.Repeat([]byte{'x'}, size)
		if err := admin.Put(ctx, "k", onlyReader{bytes.NewReader(body)}, edge.BlobMeta{}); err != nil {
			t.Fatal(err)
		}
		m, err := admin.Head(ctx, "k")
		if want := fmt.Sprintf("\"%x\"", md5.Sum(body)); err != nil || m.ETag != want {
			t.Fatalf("%d bytes: ETag %s, %v; want %s", size, m.ETag, err, want)
		}
	}
}

// onlyReader hides Seek, so a body of unknown length goes multipart past one part.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestKeysAreNeverFilePaths(t *testing.T) {
	h := newHarness(t)
	admin := h.admin()
	keys := []string{"x", "x/y", "x/../y", "x/./y", "dir/", "../../etc/passwd", "/abs", "sp ace/ü"}
	for i, k := range keys {
		if err := put(t, admin, k, fmt.Sprint(i)); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	for i, k := range keys {
		if got, err := get(t, admin, k); err != nil || got != fmt.Sprint(i) {
			t.Fatalf("get %q = %q, %v", k, got, err)
		}
	}
	// Everything the store wrote lies under its directory, in hashed file names.
	err := filepath.WalkDir(h.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, "passwd") {
			t.Errorf("key became a path: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestListPagination(t *testing.T) {
	h := newHarness(t)
	admin := h.admin()
	ctx := context.Background()
	var keys []string
	for i := range 23 {
		keys = append(keys, fmt.Sprintf("logs/exec-1/exec-%02d.ndjson", i))
	}
	keys = append(keys, "logs/exec-1/sub/a", "logs/exec-1/sub/b", "logs/exec-1/tree/c", "logs/exec-2/x")
	for _, k := range keys {
		if err := put(t, admin, k, k); err != nil {
			t.Fatal(err)
		}
	}
	pages := func(in *s3.ListObjectsV2Input) (objs, prefixes []string, n int) {
		p := s3.NewListObjectsV2Paginator(admin.S3(), in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n++
			if len(page.Contents)+len(page.CommonPrefixes) > int(aws.ToInt32(in.MaxKeys)) {
				t.Fatalf("page of %d entries, max %d", len(page.Contents)+len(page.CommonPrefixes), aws.ToInt32(in.MaxKeys))
			}
			for _, o := range page.Contents {
				objs = append(objs, *o.Key)
			}
			for _, cp := range page.CommonPrefixes {
				prefixes = append(prefixes, *cp.Prefix)
			}
		}
		return
	}
	objs, _, n := pages(&s3.ListObjectsV2Input{Bucket: aws.String("flare"), Prefix: aws.String("logs/exec-1/"), MaxKeys: aws.Int32(7)})
	if n != 4 || len(objs) != 26 || objs[0] != "logs/exec-1/exec-00.ndjson" || objs[25] != "logs/exec-1/tree/c" {
		t.Fatalf("%d pages, %d keys: %v", n, len(objs), objs)
	}
	objs, prefixes, n := pages(&s3.ListObjectsV2Input{Bucket: aws.String("flare"), Prefix: aws.String("logs/exec-1/"), Delimiter: aws.String("/"), MaxKeys: aws.Int32(5)})
	if len(objs) != 23 || strings.Join(prefixes, ",") != "logs/exec-1/sub/,logs/exec-1/tree/" || n != 5 {
		t.Fatalf("delimited: %d pages, %d keys, prefixes %v", n, len(objs), prefixes)
	}
	_, prefixes, _ = pages(&s3.ListObjectsV2Input{Bucket: aws.String("flare"), Prefix: aws.String("logs/"), Delimiter: aws.String("/"), MaxKeys: aws.Int32(1)})
	if strings.Join(prefixes, ",") != "logs/exec-1/,logs/exec-2/" {
		t.Fatalf("one prefix per page: %v", prefixes)
	}
	out, err := admin.S3().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("flare"), Prefix: aws.String("logs/"), StartAfter: aws.String("logs/exec-1/tree/c")})
	if err != nil || len(out.Contents) != 1 || *out.Contents[0].Key != "logs/exec-2/x" {
		t.Fatalf("start-after: %+v, %v", out, err)
	}
}

func TestMultipartFollowsR2Rules(t *testing.T) {
	h := newHarness(t)
	c := h.admin().S3()
	ctx := context.Background()
	key := aws.String("artifacts/exec-1/parts")
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("flare"), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var parts []types.CompletedPart
	for i, size := range []int{1 << 20, 1 << 20} {
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("flare"), Key: key, UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(make([]byte, size))})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("flare"), Key: key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	wantS3Error(t, err, 400, "InvalidPart")
	_, err = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("flare"), Key: key, UploadId: up.UploadId})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("flare"), Key: key, UploadId: up.UploadId,
		PartNumber: aws.Int32(3), Body: bytes.NewReader([]byte("late"))})
	wantS3Error(t, err, 404, "NoSuchUpload")
}

// Readers racing an overwrite see the old object or the new one, whole.
func TestOverwriteIsAtomicForReaders(t *testing.T) {
	h := newHarness(t)
	admin := h.admin()
	ctx := context.Background()
	versions := []string{strings.Repeat("a", 256<<10), strings.Repeat("b", 300<<10)}
	if err := put(t, admin, "logs/exec-1/exec.ndjson", versions[0]); err != nil {
		t.Fatal(err)
	}
	// The writer overwrites until the readers are done; they start after its first
	// overwrite, so every read races writes.
	var writer, readers sync.WaitGroup
	stop, overwritten := make(chan struct{}), make(chan struct{})
	writer.Add(1)
	go func() {
		defer writer.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := admin.Put(ctx, "logs/exec-1/exec.ndjson", strings.NewReader(versions[i%2]), edge.BlobMeta{}); err != nil {
				t.Error(err)
				close(overwritten)
				return
			}
			if i == 1 {
				close(overwritten)
			}
		}
	}()
	<-overwritten
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for range 25 {
				got, err := get(t, admin, "logs/exec-1/exec.ndjson")
				if err != nil || got != versions[0] && got != versions[1] {
					t.Errorf("torn read: %d bytes, %v", len(got), err)
					return
				}
			}
		}()
	}
	readers.Wait()
	close(stop)
	writer.Wait()
}

func TestClosedStoreRefuses(t *testing.T) {
	h := newHarness(t)
	h.store.Close()
	err := put(t, h.admin(), "logs/exec-1/x", "x")
	wantS3Error(t, err, 503, "ServiceUnavailable")
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := s3store.New(dir, []byte("short"), adminID, adminSecret); err == nil {
		t.Error("short root accepted")
	}
	if _, err := s3store.New(dir, root, blobcred.KeyIDPrefix+"x", adminSecret); err == nil {
		t.Error("admin key id in the scoped namespace accepted")
	}
	if _, err := s3store.New(dir, root, adminID, "short"); err == nil {
		t.Error("short admin secret accepted")
	}
	if _, err := s3store.New(dir, root, adminID, adminSecret, s3store.WithBucket("Not_A_Bucket")); err == nil {
		t.Error("invalid bucket name accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "FORMAT"), []byte("something else\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s3store.New(dir, root, adminID, adminSecret); err == nil {
		t.Error("foreign directory accepted")
	}
}

func TestRangeGet(t *testing.T) {
	h := newHarness(t)
	admin := h.admin()
	ctx := context.Background()
	if err := put(t, admin, "logs/exec-1/exec.ndjson", "0123456789"); err != nil {
		t.Fatal(err)
	}
	out, err := admin.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("flare"), Key: aws.String("logs/exec-1/exec.ndjson"), Range: aws.String("bytes=3-6")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "3456" || aws.ToString(out.ContentRange) != "bytes 3-6/10" {
		t.Fatalf("range read %q, Content-Range %q", b, aws.ToString(out.ContentRange))
	}
}

// Unfinished multipart uploads survive a restart too, and can be completed after it.
func TestMultipartUploadSurvivesRestart(t *testing.T) {
	dir, clock := t.TempDir(), newClock()
	h := start(t, dir, clock)
	ctx := context.Background()
	c := h.admin().S3()
	bucket, key := aws.String("flare"), aws.String("cache/acme/web/deps.tar.gz")
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: key, ContentType: aws.String("application/gzip")})
	if err != nil {
		t.Fatal(err)
	}
	part1 := bytes.Repeat([]byte{1}, 5<<20)
	p1, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: key, UploadId: up.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader(part1)})
	if err != nil {
		t.Fatal(err)
	}
	h.srv.Close()
	h.store.Close()

	h = start(t, dir, clock)
	c = h.admin().S3()
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: bucket})
	if err != nil || len(ups.Uploads) != 1 || aws.ToString(ups.Uploads[0].UploadId) != aws.ToString(up.UploadId) {
		t.Fatalf("uploads after restart: %+v, %v", ups, err)
	}
	parts, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: bucket, Key: key, UploadId: up.UploadId})
	if err != nil || len(parts.Parts) != 1 || aws.ToString(parts.Parts[0].ETag) != aws.ToString(p1.ETag) || aws.ToInt64(parts.Parts[0].Size) != 5<<20 {
		t.Fatalf("parts after restart: %+v, %v", parts, err)
	}
	p2, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: key, UploadId: up.UploadId, PartNumber: aws.Int32(2), Body: strings.NewReader("tail")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: bucket, Key: key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{ETag: p1.ETag, PartNumber: aws.Int32(1)}, {ETag: p2.ETag, PartNumber: aws.Int32(2)}}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := get(t, h.admin(), *key)
	if err != nil || got != string(part1)+"tail" {
		t.Fatalf("completed object: %d bytes, %v", len(got), err)
	}
	if m, _ := h.admin().Head(ctx, *key); m.ContentType != "application/gzip" {
		t.Fatalf("content type from CreateMultipartUpload lost: %+v", m)
	}
}
