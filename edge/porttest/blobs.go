package porttest

// The Blobs contract: the S3 client against R2 and against the embedded store, and any
// other adapter (an R2 binding in the Worker).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Option adjusts Run.
type Option func(*config)

type config struct {
	prefix   string
	manyKeys int
}

// WithPrefix confines the suite to keys under prefix (which ends in "/"), for adapters
// whose credentials are scoped or whose bucket is shared.
func WithPrefix(prefix string) Option { return func(c *config) { c.prefix = prefix } }

// WithManyKeys sets how many objects the pagination test writes (default 1105: more than
// one 1000-key page).
func WithManyKeys(n int) Option { return func(c *config) { c.manyKeys = n } }

// Blobs runs the contract. newBlobs is called once per subtest; each subtest writes
// under its own sub-prefix, so adapters may share one store between subtests.
func Blobs[R Runner[R]](t R, newBlobs func(t R) edge.Blobs, opts ...Option) {
	cfg := config{manyKeys: 1105}
	for _, o := range opts {
		o(&cfg)
	}
	for _, tc := range []struct {
		name string
		f    func(t T, b edge.Blobs, p string)
	}{
		{"RoundTripsBodyContentTypeAndMetadata", roundTrip},
		{"DefaultsContentType", defaultContentType},
		{"StoresEmptyObjects", emptyObject},
		{"OverwriteReplacesBodyAndMetadata", overwrite},
		{"AbsentKeyIsErrBlobNotFound", notFound},
		{"DeleteRemovesAndIsIdempotent", deleteObject},
		{"ListIsPrefixedSortedAndMatchesHead", list},
		{"ListReturnsEveryPage", func(t T, b edge.Blobs, p string) { listMany(t, b, p, cfg.manyKeys) }},
		{"KeysWithSpecialCharacters", specialKeys},
		{"LargeObjectsAreByteIdentical", large},
		{"FailedPutLeavesPreviousObject", failedPut},
		{"GetStreamsAndCanStopEarly", partialRead},
	} {
		t.Run(tc.name, func(t R) {
			tc.f(t, newBlobs(t), cfg.prefix+"blobstest/"+tc.name+"/")
		})
	}
}

var ctx = context.Background()

func mustPut(t T, b edge.Blobs, key string, body []byte, meta edge.BlobMeta) {
	t.Helper()
	if err := b.Put(ctx, key, bytes.NewReader(body), meta); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func mustGet(t T, b edge.Blobs, key string) ([]byte, edge.BlobMeta) {
	t.Helper()
	rc, meta, err := b.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	body, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return body, meta
}

func checkETag(t T, what, etag string) {
	t.Helper()
	if len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Fatalf("%s ETag %q: want a quoted HTTP entity tag", what, etag)
	}
}

func roundTrip(t T, b edge.Blobs, p string) {
	body := []byte(`{"stream":"stdout","line":"ok"}` + "\n")
	meta := edge.BlobMeta{ContentType: "application/x-ndjson", Metadata: map[string]string{"step": "build", "attempt": "2"}}
	mustPut(t, b, p+"exec.ndjson", body, meta)
	got, gm := mustGet(t, b, p+"exec.ndjson")
	if !bytes.Equal(got, body) {
		t.Fatalf("body %q, want %q", got, body)
	}
	hm, err := b.Head(ctx, p+"exec.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []edge.BlobMeta{gm, hm} {
		if m.ContentType != "application/x-ndjson" || m.Size != int64(len(body)) ||
			m.Metadata["step"] != "build" || m.Metadata["attempt"] != "2" || len(m.Metadata) != 2 {
			t.Fatalf("meta %+v", m)
		}
		checkETag(t, "get/head", m.ETag)
	}
	if gm.ETag != hm.ETag {
		t.Fatalf("GET ETag %s != HEAD ETag %s", gm.ETag, hm.ETag)
	}
	mustPut(t, b, p+"other", []byte("different"), edge.BlobMeta{})
	if om, _ := b.Head(ctx, p+"other"); om.ETag == hm.ETag {
		t.Fatal("different bodies share an ETag")
	}
}

func defaultContentType(t T, b edge.Blobs, p string) {
	mustPut(t, b, p+"bin", []byte{0, 1, 2}, edge.BlobMeta{})
	if m, err := b.Head(ctx, p+"bin"); err != nil || m.ContentType != "application/octet-stream" {
		t.Fatalf("content type %q, %v; want application/octet-stream", m.ContentType, err)
	}
}

func emptyObject(t T, b edge.Blobs, p string) {
	mustPut(t, b, p+"empty", nil, edge.BlobMeta{ContentType: "text/plain"})
	got, m := mustGet(t, b, p+"empty")
	if len(got) != 0 || m.Size != 0 {
		t.Fatalf("empty object: %d bytes, size %d", len(got), m.Size)
	}
	if err := b.Put(ctx, p+"empty-stream", io.MultiReader(), edge.BlobMeta{}); err != nil {
		t.Fatalf("put of an empty unseekable body: %v", err)
	}
	if got, _ := mustGet(t, b, p+"empty-stream"); len(got) != 0 {
		t.Fatalf("empty stream stored %d bytes", len(got))
	}
}

func overwrite(t T, b edge.Blobs, p string) {
	mustPut(t, b, p+"k", []byte("first"), edge.BlobMeta{ContentType: "text/plain", Metadata: map[string]string{"old": "1"}})
	mustPut(t, b, p+"k", []byte("second!"), edge.BlobMeta{ContentType: "text/html", Metadata: map[string]string{"new": "2"}})
	got, m := mustGet(t, b, p+"k")
	if string(got) != "second!" || m.ContentType != "text/html" || m.Metadata["new"] != "2" || m.Metadata["old"] != "" {
		t.Fatalf("after overwrite: %q %+v", got, m)
	}
}

func notFound(t T, b edge.Blobs, p string) {
	if _, _, err := b.Get(ctx, p+"absent"); !errors.Is(err, edge.ErrBlobNotFound) {
		t.Fatalf("get of an absent key: %v, want ErrBlobNotFound", err)
	}
	if _, err := b.Head(ctx, p+"absent"); !errors.Is(err, edge.ErrBlobNotFound) {
		t.Fatalf("head of an absent key: %v, want ErrBlobNotFound", err)
	}
	mustPut(t, b, p+"dir/file", []byte("x"), edge.BlobMeta{})
	if _, err := b.Head(ctx, p+"dir"); !errors.Is(err, edge.ErrBlobNotFound) {
		t.Fatalf("head of a key that is only a prefix: %v, want ErrBlobNotFound", err)
	}
}

func deleteObject(t T, b edge.Blobs, p string) {
	mustPut(t, b, p+"gone", []byte("x"), edge.BlobMeta{})
	mustPut(t, b, p+"kept", []byte("y"), edge.BlobMeta{})
	if err := b.Delete(ctx, p+"gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Head(ctx, p+"gone"); !errors.Is(err, edge.ErrBlobNotFound) {
		t.Fatalf("head after delete: %v", err)
	}
	if err := b.Delete(ctx, p+"gone"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := b.Delete(ctx, p+"never-was"); err != nil {
		t.Fatalf("delete of an absent key: %v", err)
	}
	ls, err := b.List(ctx, p)
	if err != nil || len(ls) != 1 || ls[0].Key != p+"kept" {
		t.Fatalf("list after delete: %v, %v", ls, err)
	}
}

func list(t T, b edge.Blobs, p string) {
	keys := []string{p + "logs/exec-10.ndjson", p + "logs/exec-2.ndjson", p + "logs/exec.ndjson", p + "logs/sub/deep/x", p + "logsibling"}
	for i, k := range keys {
		mustPut(t, b, k, bytes.Repeat([]byte{'z'}, i+1), edge.BlobMeta{})
	}
	ls, err := b.List(ctx, p+"logs/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range ls {
		got = append(got, o.Key)
		h, err := b.Head(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		checkETag(t, "list", o.ETag)
		if o.Size != h.Size || o.ETag != h.ETag {
			t.Fatalf("list entry %+v, head %+v", o, h)
		}
		if want := int64(slices.Index(keys, o.Key) + 1); o.Size != want {
			t.Fatalf("%s: size %d, want %d", o.Key, o.Size, want)
		}
	}
	if want := keys[:4]; !slices.Equal(got, want) {
		t.Fatalf("list %v, want %v (byte order, prefix only)", got, want)
	}
	if ls, err := b.List(ctx, p+"nothing/"); err != nil || len(ls) != 0 {
		t.Fatalf("empty list: %v, %v", ls, err)
	}
}

func listMany(t T, b edge.Blobs, p string, n int) {
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("%sk/%05d", p, i)
	}
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				if err := b.Put(ctx, k, strings.NewReader(k), edge.BlobMeta{}); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, k := range want {
		work <- k
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	ls, err := b.List(ctx, p+"k/")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(ls))
	for i, o := range ls {
		got[i] = o.Key
	}
	if !slices.Equal(got, want) {
		t.Fatalf("list of %d keys returned %d (first %v)", n, len(got), got[:min(3, len(got))])
	}
}

func cmpErr(prev, err error) error {
	if prev != nil {
		return prev
	}
	return err
}

func specialKeys(t T, b edge.Blobs, p string) {
	keys := []string{"a b+c(1)~!$&'*,;=@.txt", "ünï/cødé 名前.html", "x.y-z_w", "q?u#e", "semi;colon"}
	for i, k := range keys {
		mustPut(t, b, p+k, []byte(fmt.Sprint(i)), edge.BlobMeta{})
	}
	for i, k := range keys {
		if got, _ := mustGet(t, b, p+k); string(got) != fmt.Sprint(i) {
			t.Fatalf("%q: %q", k, got)
		}
	}
	ls, err := b.List(ctx, p)
	if err != nil || len(ls) != len(keys) {
		t.Fatalf("list: %v, %v", ls, err)
	}
	for _, o := range ls {
		if !slices.Contains(keys, strings.TrimPrefix(o.Key, p)) {
			t.Fatalf("listed key %q was never written", o.Key)
		}
	}
}

// onlyReader hides every method but Read, so adapters see an unseekable stream.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func large(t T, b edge.Blobs, p string) {
	body := make([]byte, 12<<20+12345)
	rand.Read(body)
	want := sha256.Sum256(body)
	for name, put := range map[string]func(key string) error{
		"seekable": func(k string) error {
			return b.Put(ctx, k, bytes.NewReader(body), edge.BlobMeta{ContentType: "application/gzip"})
		},
		"stream of unknown length": func(k string) error {
			return b.Put(ctx, k, onlyReader{bytes.NewReader(body)}, edge.BlobMeta{ContentType: "application/gzip"})
		},
		"stream of declared length": func(k string) error {
			return b.Put(ctx, k, onlyReader{bytes.NewReader(body)}, edge.BlobMeta{ContentType: "application/gzip", Size: int64(len(body))})
		},
		"os pipe": func(k string) error {
			pr, pw, err := os.Pipe()
			if err != nil {
				return err
			}
			defer pr.Close()
			go func() {
				pw.Write(body)
				pw.Close()
			}()
			return b.Put(ctx, k, pr, edge.BlobMeta{ContentType: "application/gzip"})
		},
		"io pipe": func(k string) error {
			pr, pw := io.Pipe()
			go func() {
				for off := 0; off < len(body); off += 100_000 {
					if _, err := pw.Write(body[off:min(off+100_000, len(body))]); err != nil {
						return
					}
				}
				pw.Close()
			}()
			return b.Put(ctx, k, pr, edge.BlobMeta{ContentType: "application/gzip"})
		},
	} {
		func(t T) {
			k := p + strings.ReplaceAll(name, " ", "-") + ".tar.gz"
			if err := put(k); err != nil {
				t.Fatal(err)
			}
			rc, m, err := b.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			h := sha256.New()
			n, err := io.Copy(h, rc)
			if err != nil || n != int64(len(body)) || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("read back %d bytes (%v), want %d identical bytes", n, err, len(body))
			}
			if m.Size != int64(len(body)) || m.ContentType != "application/gzip" {
				t.Fatalf("meta %+v", m)
			}
		}(named(t, name))
	}
}

// failingReader yields n bytes, then fails.
type failingReader struct{ n int }

var errSource = errors.New("source failed")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errSource
	}
	k := min(len(p), f.n)
	clear(p[:k])
	f.n -= k
	return k, nil
}

func failedPut(t T, b edge.Blobs, p string) {
	for name, c := range map[string]struct {
		r    io.Reader
		size int64
	}{
		"small":                   {&failingReader{n: 1000}, 0},
		"multipart":               {&failingReader{n: 20 << 20}, 0},
		"declared length":         {&failingReader{n: 1000}, 5000},
		"longer than declared":    {bytes.NewReader(make([]byte, 6000)), 5000},
		"longer than declared, 2": {onlyReader{bytes.NewReader(make([]byte, 6000))}, 5000},
	} {
		func(t T) {
			k := p + strings.ReplaceAll(name, " ", "-")
			mustPut(t, b, k, []byte("previous"), edge.BlobMeta{})
			if err := b.Put(ctx, k, c.r, edge.BlobMeta{Size: c.size}); err == nil {
				t.Fatal("put of a failing body succeeded")
			}
			if got, _ := mustGet(t, b, k); string(got) != "previous" {
				t.Fatalf("after a failed put: %d bytes, want the previous object", len(got))
			}
		}(named(t, name))
	}
}

func partialRead(t T, b edge.Blobs, p string) {
	body := bytes.Repeat([]byte("0123456789"), 1<<20/10)
	mustPut(t, b, p+"big", body, edge.BlobMeta{})
	for range 3 { // closing early must not wedge the adapter's connections
		rc, _, err := b.Get(ctx, p+"big")
		if err != nil {
			t.Fatal(err)
		}
		var first [10]byte
		if _, err := io.ReadFull(rc, first[:]); err != nil || string(first[:]) != "0123456789" {
			t.Fatalf("first bytes %q, %v", first, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
