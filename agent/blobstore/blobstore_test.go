package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/agent/blobstore"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

// TestPutStreamsThroughTheSharedUploader: a stream longer than one part goes up as a
// multipart upload of equal parts (which the embedded store refuses otherwise, as R2
// does), a short one in one PUT, and Put reports the bytes it stored.
func TestPutStreamsThroughTheSharedUploader(t *testing.T) {
	st := s3test.Start(t)
	id, secret := st.Credential(t, "ex1", "acme/web")
	s, err := blobstore.New(blobstore.Config{Endpoint: st.URL, Bucket: st.Bucket, AccessKeyID: id, Secret: secret, PartSize: 5 << 20, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1000, 5 << 20, 12<<20 + 3} {
		body := bytes.Repeat([]byte{byte(size)}, size)
		key := "artifacts/ex1/blob"
		n, err := s.Put(context.Background(), key, io.MultiReader(bytes.NewReader(body)), "")
		if err != nil || n != int64(size) {
			t.Fatalf("size %d: Put = %d, %v", size, n, err)
		}
		if got := st.Get(t, key); got != string(body) {
			t.Fatalf("size %d: stored %d bytes that differ", size, len(got))
		}
	}
}

func TestPutOutsideTheGrantIsForbidden(t *testing.T) {
	st := s3test.Start(t)
	id, secret := st.Credential(t, "ex1", "acme/web")
	s, err := blobstore.New(blobstore.Config{Endpoint: st.URL, Bucket: st.Bucket, AccessKeyID: id, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(context.Background(), "artifacts/ex2/x", bytes.NewReader([]byte("x")), "")
	if !errors.Is(err, blobstore.ErrForbidden) {
		t.Fatalf("Put outside the grant: %v", err)
	}
}
