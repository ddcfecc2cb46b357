package blobs_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/blobs"
	"github.com/flare-dispatch/flare-dispatch/edge/local/s3store"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
	"github.com/flare-dispatch/flare-dispatch/internal/ci"
)

const (
	adminID     = "flare-admin"
	adminSecret = "admin-secret-admin-secret-admin-secret"
)

var root = []byte("0123456789abcdef0123456789abcdef")

// recorder notes each request the store receives: method, query and payload hash.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Method+" "+r.URL.RawQuery+" "+r.Header.Get("X-Amz-Content-Sha256"))
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (rec *recorder) take() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.reqs
	rec.reqs = nil
	return out
}

// newStore serves a fresh embedded store over loopback HTTP.
func newStore(t testing.TB) (*httptest.Server, *recorder) {
	st, err := s3store.New(t.TempDir(), root, adminID, adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	srv := httptest.NewServer(rec.wrap(st.Handler()))
	t.Cleanup(func() { srv.Close(); st.Close() })
	return srv, rec
}

func newClient(t testing.TB, url, id, secret string) *blobs.Client {
	c, err := blobs.New(url, "flare", id, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestContractAgainstStoreAsAdmin(t *testing.T) {
	porttest.Blobs(t, func(t *testing.T) edge.Blobs {
		srv, _ := newStore(t)
		return newClient(t, srv.URL, adminID, adminSecret)
	})
}

func TestContractAgainstStoreWithScopedCredential(t *testing.T) {
	porttest.Blobs(t, func(t *testing.T) edge.Blobs {
		srv, _ := newStore(t)
		id, secret, err := blobcred.Mint(root, "exec-1", blobcred.ExecGrants("exec-1", "acme/web", true), time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return newClient(t, srv.URL, id, secret)
	}, porttest.WithPrefix("artifacts/exec-1/"))
}

// onlyReader hides Seek and ReadAt.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// count counts PUT requests with and without a partNumber.
func count(reqs []string) (singles, parts int) {
	for _, r := range reqs {
		switch {
		case !strings.HasPrefix(r, "PUT "):
		case strings.Contains(r, "partNumber="):
			parts++
		default:
			singles++
		}
	}
	return singles, parts
}

// TestPutChoosesTheStreamingPath pins how each kind of body travels.
func TestPutChoosesTheStreamingPath(t *testing.T) {
	srv, rec := newStore(t)
	c := newClient(t, srv.URL, adminID, adminSecret)
	c.MultipartThreshold = 16 << 20
	ctx := context.Background()
	body := make([]byte, 20<<20+7)
	small := body[:3<<20]
	cases := []struct {
		name      string
		r         io.Reader
		size      int64
		singles   int    // plain PUTs (no query)
		parts     int    // UploadPart requests
		payload   string // x-amz-content-sha256 of the first PUT
		wantBytes int
	}{
		{"small seekable", bytes.NewReader(small), 0, 1, 0, "hex", len(small)},
		{"small stream, unknown length", onlyReader{bytes.NewReader(small)}, 0, 1, 0, "hex", len(small)},
		{"small stream, declared length", onlyReader{bytes.NewReader(small)}, int64(len(small)), 1, 0, "UNSIGNED-PAYLOAD", len(small)},
		{"large stream, unknown length", onlyReader{bytes.NewReader(body)}, 0, 0, 3, "hex", len(body)},
		{"large stream, declared length", onlyReader{bytes.NewReader(body)}, int64(len(body)), 0, 3, "hex", len(body)},
		{"large file-like (ReaderAt)", bytes.NewReader(body), 0, 0, 3, "hex", len(body)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			if err := c.Put(ctx, "k", tc.r, edge.BlobMeta{Size: tc.size}); err != nil {
				t.Fatal(err)
			}
			reqs := rec.take()
			if singles, parts := count(reqs); singles != tc.singles || parts != tc.parts {
				t.Errorf("%d single PUTs and %d parts, want %d and %d: %q", singles, parts, tc.singles, tc.parts, reqs)
			}
			first := reqs[0]
			if tc.parts > 0 {
				first = reqs[1]
			}
			if hash := first[strings.LastIndexByte(first, ' ')+1:]; (tc.payload == "hex") != (len(hash) == 64) || tc.payload != "hex" && hash != tc.payload {
				t.Errorf("payload hash %q, want %s", hash, tc.payload)
			}
			if m, err := c.Head(ctx, "k"); err != nil || m.Size != int64(tc.wantBytes) {
				t.Errorf("stored %d bytes, %v; want %d", m.Size, err, tc.wantBytes)
			}
		})
	}
}

// TestLargeStreamIsNotBuffered uploads 96 MiB from an unseekable stream and checks the
// client did not hold it: allocations stay near PartSize × (Concurrency + 1).
func TestLargeStreamIsNotBuffered(t *testing.T) {
	ci.SkipShort(t, "uploads 96 MiB")
	srv, _ := newStore(t)
	c := newClient(t, srv.URL, adminID, adminSecret)
	c.Concurrency = 2
	const size = 96 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := c.Put(context.Background(), "big", io.LimitReader(zeros{}, size), edge.BlobMeta{}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("uploading %d MiB allocated %d MiB in this process (client and store)", size>>20, alloc>>20)
	if alloc > size/2 {
		t.Fatalf("allocated %d MiB for a %d MiB stream: the body was buffered", alloc>>20, size>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestNewRejectsBadEndpoints(t *testing.T) {
	for _, ep := range []string{"", "localhost:9000", "ftp://x", "http://"} {
		if _, err := blobs.New(ep, "flare", "id", "secret", nil); err == nil {
			t.Errorf("endpoint %q accepted", ep)
		}
	}
	if _, err := blobs.New("http://127.0.0.1:1", "", "id", "secret", nil); err == nil {
		t.Error("empty bucket accepted")
	}
}

func TestPutRejectsUnportableMetadata(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:1", adminID, adminSecret)
	for _, md := range []map[string]string{{"bad key": "v"}, {"k": "line\nbreak"}, {"k": "ünicode"}, {"": "v"}} {
		if err := c.Put(context.Background(), "k", strings.NewReader("x"), edge.BlobMeta{Metadata: md}); err == nil {
			t.Errorf("metadata %q accepted", md)
		}
	}
}

// BenchmarkStore measures 1 MiB put and get throughput through the embedded store over
// loopback HTTP with SigV4 (signed payloads), as the agent and the edge use it.
func BenchmarkStore(b *testing.B) {
	srv, _ := newStore(b)
	id, secret, err := blobcred.Mint(root, "exec-1", blobcred.ExecGrants("exec-1", "acme/web", true), time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 1<<20)
	for _, who := range []struct{ name, id, secret string }{{"admin", adminID, adminSecret}, {"scoped", id, secret}} {
		c := newClient(b, srv.URL, who.id, who.secret)
		ctx := context.Background()
		b.Run("Put1MiB/"+who.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for i := 0; b.Loop(); i++ {
				if err := c.Put(ctx, "logs/exec-1/bench", bytes.NewReader(body), edge.BlobMeta{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Get1MiB/"+who.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				rc, _, err := c.Get(ctx, "logs/exec-1/bench")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
		b.Run("PutParallel1MiB/"+who.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.Put(ctx, "logs/exec-1/bench-par", bytes.NewReader(body), edge.BlobMeta{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
