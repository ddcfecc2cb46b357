package s3api_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/blobs"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/s3api"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
)

const (
	bucket      = "flare-runs"
	adminKey    = "ADMINKEY"
	adminSecret = "admin-secret-0123456789"
)

var root = []byte("0123456789abcdef0123456789abcdef")

// server mounts the endpoint under /s3 of a test server, as the Worker does.
func server(t *testing.T, store edge.Blobs) string {
	t.Helper()
	h := &s3api.Handler{Prefix: "/s3", Bucket: bucket, Store: store,
		Auth: &blobcred.Authenticator{Root: root, AdminKeyID: adminKey, AdminSecret: adminSecret}}
	mux := http.NewServeMux()
	mux.Handle("/s3/", h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "not the endpoint", http.StatusTeapot) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/s3"
}

// agentClient is configured as the agent's (agent/logship, agent/blobstore): path-style,
// region auto, checksums only when required.
func agentClient(endpoint, keyID, secret string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     "auto",
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// The edge/blobs contract, through the endpoint (an S3 client with a path prefix in
// its endpoint) onto an in-memory store: every operation the agents use, multipart
// included, with path-style signing under the prefix.
func TestEndpointHoldsTheBlobsContract(t *testing.T) {
	endpoint := server(t, newMemStore())
	porttest.Blobs(t, func(t *testing.T) edge.Blobs {
		c, err := blobs.New(endpoint, bucket, adminKey, adminSecret, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// The same contract with a scoped credential confined to an execution's log prefix.
func TestEndpointHoldsTheContractForAScopedCredential(t *testing.T) {
	endpoint := server(t, newMemStore())
	key, secret, err := blobcred.Mint(root, "exec-1", blobcred.ExecGrants("exec-1", "acme/app", false), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	porttest.Blobs(t, func(t *testing.T) edge.Blobs {
		c, err := blobs.New(endpoint, bucket, key, secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}, porttest.WithPrefix("logs/exec-1/"), porttest.WithManyKeys(1105))
}

func TestScopedCredentialStaysInsideItsGrants(t *testing.T) {
	store := newMemStore()
	endpoint := server(t, store)
	ctx := context.Background()
	key, secret, _ := blobcred.Mint(root, "exec-1", blobcred.ExecGrants("exec-1", "acme/app", false), time.Hour, time.Now())
	c := agentClient(endpoint, key, secret)
	put := func(k string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader("x")})
		return err
	}
	if err := put("logs/exec-1/exec-0001.ndjson"); err != nil {
		t.Fatalf("put inside the grant: %v", err)
	}
	for _, k := range []string{"logs/exec-2/x", "cache/acme/app/x", "artifacts/exec-10/x", "logs/exec-1"} {
		if err := put(k); !isCode(err, "AccessDenied") {
			t.Errorf("put %s: %v, want AccessDenied", k, err)
		}
	}
	store.Put(ctx, "cache/acme/app/deps.tar", strings.NewReader("cached"), edge.BlobMeta{})
	if out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("cache/acme/app/deps.tar")}); err != nil {
		t.Fatalf("read of the read-only cache: %v", err)
	} else {
		out.Body.Close()
	}
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("logs/")}); !isCode(err, "AccessDenied") {
		t.Errorf("list of logs/: %v, want AccessDenied", err)
	}
	other := agentClient(endpoint, key, "wrong-secret")
	if _, err := other.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("logs/exec-1/exec-0001.ndjson")}); err == nil {
		t.Error("a wrong secret was accepted")
	}
	if _, err := agentClient(endpoint, key, secret).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("other-bucket"), Key: aws.String("logs/exec-1/exec-0001.ndjson")}); !isCode(err, "AccessDenied") {
		t.Errorf("other bucket: %v, want AccessDenied", err)
	}
	expiredKey, expiredSecret, _ := blobcred.Mint(root, "exec-1", blobcred.ExecGrants("exec-1", "acme/app", false), time.Minute, time.Now().Add(-time.Hour))
	if err := func() error {
		_, err := agentClient(endpoint, expiredKey, expiredSecret).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("logs/exec-1/y"), Body: strings.NewReader("y")})
		return err
	}(); !isCode(err, "AccessDenied") {
		t.Errorf("expired credential: %v, want AccessDenied", err)
	}
}

// The signature covers the path with its prefix: a request signed for the root of the
// host (without the prefix) and replayed under it must not pass.
func TestSignatureCoversThePathPrefix(t *testing.T) {
	store := newMemStore()
	endpoint := server(t, store)
	ctx := context.Background()
	var signedPath string
	c := s3.New(s3.Options{
		Region: "auto", BaseEndpoint: aws.String(strings.TrimSuffix(endpoint, "/s3")), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(adminKey, adminSecret, ""),
		HTTPClient: doerFunc(func(r *http.Request) (*http.Response, error) {
			signedPath = r.URL.Path
			r.URL.Path = "/s3" + r.URL.Path // moved under the prefix after signing
			r.URL.RawPath = ""
			return http.DefaultClient.Do(r)
		}),
	})
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("logs/x"), Body: strings.NewReader("x")})
	if !isCode(err, "SignatureDoesNotMatch") {
		t.Fatalf("request signed for %s, sent under /s3: %v, want SignatureDoesNotMatch", signedPath, err)
	}
}

func TestPayloadHashMismatchStoresNothing(t *testing.T) {
	store := newMemStore()
	endpoint := server(t, store)
	ctx := context.Background()
	c := s3.New(s3.Options{
		Region: "auto", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(adminKey, adminSecret, ""),
		HTTPClient: doerFunc(func(r *http.Request) (*http.Response, error) {
			b, _ := io.ReadAll(r.Body)
			b[0] ^= 1 // corrupted in transit, after signing
			r.Body = io.NopCloser(bytes.NewReader(b))
			return http.DefaultClient.Do(r)
		}),
	})
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("logs/x"), Body: bytes.NewReader([]byte("hello"))})
	if !isCode(err, "XAmzContentSHA256Mismatch") {
		t.Fatalf("corrupted body: %v, want XAmzContentSHA256Mismatch", err)
	}
	if _, err := store.Head(ctx, "logs/x"); !errors.Is(err, edge.ErrBlobNotFound) {
		t.Fatalf("the corrupted object was stored: %v", err)
	}
}

func TestListObjectsV2PagesWithDelimiter(t *testing.T) {
	store := newMemStore()
	endpoint := server(t, store)
	ctx := context.Background()
	for _, k := range []string{"p/a", "p/b/1", "p/b/2", "p/c", "p/d/1", "p/e", "q/x"} {
		store.Put(ctx, k, strings.NewReader(k), edge.BlobMeta{})
	}
	c := agentClient(endpoint, adminKey, adminSecret)
	var keys, prefixes []string
	pages := 0
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("p/"),
		Delimiter: aws.String("/"), MaxKeys: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		for _, cp := range page.CommonPrefixes {
			prefixes = append(prefixes, aws.ToString(cp.Prefix))
		}
	}
	if !slices.Equal(keys, []string{"p/a", "p/c", "p/e"}) || !slices.Equal(prefixes, []string{"p/b/", "p/d/"}) || pages != 3 {
		t.Fatalf("keys %v prefixes %v in %d pages", keys, prefixes, pages)
	}
}

func TestOutsideThePrefixOrUnsupportedIsRefused(t *testing.T) {
	endpoint := server(t, newMemStore())
	ctx := context.Background()
	c := agentClient(endpoint, adminKey, adminSecret)
	_, err := c.PutObjectAcl(ctx, &s3.PutObjectAclInput{Bucket: aws.String(bucket), Key: aws.String("k"), ACL: types.ObjectCannedACLPublicRead})
	if !isCode(err, "NotImplemented") {
		t.Fatalf("PutObjectAcl: %v, want NotImplemented", err)
	}
	res, err := http.Get(endpoint + "/" + bucket + "/k")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("anonymous GET: %d, want 403", res.StatusCode)
	}
}

type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

func isCode(err error, code string) bool {
	return err != nil && strings.Contains(err.Error(), code)
}

// memStore is an in-memory edge.Blobs with R2's multipart rules (parts but the last
// of one size, at least 5 MiB).
type memStore struct {
	mu      sync.Mutex
	objects map[string]memObject
	uploads map[string]*memUpload
	nextID  int
}

type memObject struct {
	body []byte
	meta edge.BlobMeta
}

type memUpload struct {
	key   string
	meta  edge.BlobMeta
	parts map[int][]byte
}

func newMemStore() *memStore {
	return &memStore{objects: map[string]memObject{}, uploads: map[string]*memUpload{}}
}

func etagOf(b []byte) string {
	s := md5.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

func (m *memStore) Put(ctx context.Context, key string, r io.Reader, meta edge.BlobMeta) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if meta.Size > 0 && int64(len(b)) != meta.Size {
		return fmt.Errorf("declared %d bytes, got %d", meta.Size, len(b))
	}
	if meta.ContentType == "" {
		meta.ContentType = "application/octet-stream"
	}
	meta.Size, meta.ETag = int64(len(b)), etagOf(b)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = memObject{body: b, meta: meta}
	return nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, edge.BlobMeta, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return nil, edge.BlobMeta{}, edge.ErrBlobNotFound
	}
	return io.NopCloser(bytes.NewReader(o.body)), o.meta, nil
}

func (m *memStore) Head(ctx context.Context, key string) (edge.BlobMeta, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return edge.BlobMeta{}, edge.ErrBlobNotFound
	}
	return o.meta, nil
}

func (m *memStore) List(ctx context.Context, prefix string) ([]edge.BlobInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []edge.BlobInfo
	for k, o := range m.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, edge.BlobInfo{Key: k, Size: o.meta.Size, ETag: o.meta.ETag})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	return nil
}

func (m *memStore) CreateMultipartUpload(ctx context.Context, key string, meta edge.BlobMeta) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	id := "up-" + strconv.Itoa(m.nextID)
	m.uploads[id] = &memUpload{key: key, meta: meta, parts: map[int][]byte{}}
	return id, nil
}

func (m *memStore) UploadPart(ctx context.Context, key, id string, n int, r io.Reader, size int64) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	if int64(len(b)) != size {
		return "", fmt.Errorf("part %d: declared %d bytes, got %d", n, size, len(b))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.uploads[id]
	if u == nil || u.key != key {
		return "", s3api.ErrNoSuchUpload
	}
	u.parts[n] = b
	return etagOf(b), nil
}

func (m *memStore) CompleteMultipartUpload(ctx context.Context, key, id string, parts []s3api.Part) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.uploads[id]
	if u == nil || u.key != key {
		return "", s3api.ErrNoSuchUpload
	}
	var body []byte
	for i, p := range parts {
		b, ok := u.parts[p.Number]
		if !ok || etagOf(b) != p.ETag {
			return "", fmt.Errorf("part %d: %w", p.Number, s3api.ErrInvalidPart)
		}
		if i < len(parts)-1 && (len(b) < 5<<20 || len(b) != len(u.parts[parts[0].Number])) {
			return "", fmt.Errorf("part %d: %d bytes: %w", p.Number, len(b), s3api.ErrInvalidPart)
		}
		body = append(body, b...)
	}
	meta := u.meta
	meta.Size, meta.ETag = int64(len(body)), fmt.Sprintf(`"%s-%d"`, strings.Trim(etagOf(body), `"`), len(parts))
	m.objects[key] = memObject{body: body, meta: meta}
	delete(m.uploads, id)
	return meta.ETag, nil
}

func (m *memStore) AbortMultipartUpload(ctx context.Context, key, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.uploads[id] == nil {
		return s3api.ErrNoSuchUpload
	}
	delete(m.uploads, id)
	return nil
}

var (
	_ edge.Blobs      = (*memStore)(nil)
	_ s3api.Multipart = (*memStore)(nil)
)

// Cloudflare hands a Worker every request with Accept-Encoding rewritten to
// "br, gzip"; the SDK signed "identity".
func TestAcceptEncodingRewrittenByThePlatformStillVerifies(t *testing.T) {
	store := newMemStore()
	endpoint := server(t, store)
	ctx := context.Background()
	var sent string
	c := s3.New(s3.Options{
		Region: "auto", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(adminKey, adminSecret, ""),
		HTTPClient: doerFunc(func(r *http.Request) (*http.Response, error) {
			sent = r.Header.Get("Accept-Encoding")
			r.Header.Set("Accept-Encoding", "br, gzip")
			return http.DefaultClient.Do(r)
		}),
	})
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("logs/x"), Body: strings.NewReader("x")}); err != nil {
		t.Fatalf("put with Accept-Encoding %q rewritten: %v", sent, err)
	}
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("logs/")}); err != nil {
		t.Fatalf("list: %v", err)
	}
}
