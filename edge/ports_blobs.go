package edge

import (
	"context"
	"errors"
	"io"
)

// ErrBlobNotFound is returned (wrapped) by Blobs.Get and Blobs.Head when no object has the key.
var ErrBlobNotFound = errors.New("blob not found")

// BlobMeta describes one object. On Put, Size > 0 declares the body's exact length
// (the adapter may then stream it in one request); 0 means unknown. ETag is the
// HTTP form, quotes included, and is ignored on Put. Metadata keys are lower-case.
type BlobMeta struct {
	ContentType string
	Size        int64
	ETag        string
	Metadata    map[string]string
}

// BlobInfo is one entry of a listing.
type BlobInfo struct {
	Key  string
	Size int64
	ETag string
}

// Blobs is what the edge needs from object storage (R2 in production, the embedded
// S3-compatible store locally). Keys are plain S3 keys such as logs/<exec>/exec.ndjson.
type Blobs interface {
	// Put stores the body under key, replacing any object there. Large bodies stream.
	Put(ctx context.Context, key string, r io.Reader, meta BlobMeta) error
	// Get opens the object; the caller closes the body. ErrBlobNotFound when absent.
	Get(ctx context.Context, key string) (io.ReadCloser, BlobMeta, error)
	// Head is Get without the body. ErrBlobNotFound when absent.
	Head(ctx context.Context, key string) (BlobMeta, error)
	// List returns every object whose key starts with prefix, in key order, across all pages.
	List(ctx context.Context, prefix string) ([]BlobInfo, error)
	// Delete removes the object; deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
}
