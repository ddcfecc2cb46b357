// Package blobstore is the agent's object storage client for artifacts and caches: the
// S3 API with the short-lived credential scoped to the execution's prefixes that the
// edge minted (R2 in production, the embedded store of `flare up` locally).
//
// Put streams a body of unknown length through s3client.Uploader (the edge's uploader
// too): one PUT for a body that fits in one part, else a multipart upload of equal
// parts (R2's rule) with a few parts in flight, so an archive being written by a
// tar | zstd pipeline is uploaded while it is produced, in bounded memory.
package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/flare-dispatch/flare-dispatch/internal/s3client"
)

// ErrNotFound is returned (wrapped) for a key with no object.
var ErrNotFound = errors.New("blob not found")

// ErrForbidden is returned (wrapped) when the credential does not allow the operation
// (a read-only cache grant, a key outside the execution's prefixes).
var ErrForbidden = errors.New("blob access denied")

// Config is a bucket and the scoped credential.
type Config struct {
	Endpoint, Bucket, AccessKeyID, Secret string
	HTTPClient                            *http.Client
	PartSize                              int64 // default s3client.DefaultPartSize
	Concurrency                           int   // parts in flight; default s3client.DefaultConcurrency
}

// Store talks to one bucket.
type Store struct {
	s3          *s3.Client
	bucket      string
	partSize    int64
	concurrency int
}

// Object is one listed object.
type Object struct {
	Key      string
	Size     int64
	Modified time.Time
}

// New returns a store.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("blobstore: endpoint and bucket are required")
	}
	return &Store{s3: s3client.New(cfg.Endpoint, cfg.AccessKeyID, cfg.Secret, cfg.HTTPClient), bucket: cfg.Bucket,
		partSize: cfg.PartSize, concurrency: cfg.Concurrency}, nil
}

// Put stores everything r yields under key and returns the byte count. It streams
// through s3client.Uploader, the uploader the edge uses too.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	cr := &countingReader{r: r}
	u := s3client.Uploader{S3: s.s3, Bucket: s.bucket, PartSize: s.partSize, Concurrency: s.concurrency}
	err := u.Put(ctx, key, cr, s3client.Upload{ContentType: contentType})
	return cr.n, mapErr("put "+key, err)
}

// countingReader counts what the uploader read. It hides any Seeker of r on purpose:
// the body is a stream whose length nobody knows in advance.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// PutBytes stores b under key in one request.
func (s *Store) PutBytes(ctx context.Context, key string, b []byte, contentType string) error {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))), ContentType: &contentType,
	})
	return mapErr("put "+key, err)
}

// Get opens an object; the caller closes the body. size is -1 when unknown.
func (s *Store) Get(ctx context.Context, key string) (body io.ReadCloser, size int64, err error) {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, 0, mapErr("get "+key, err)
	}
	size = -1
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return out.Body, size, nil
}

// Delete removes an object; one that is not there is not an error (S3's own answer).
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	return mapErr("delete "+key, err)
}

// Head returns an object's size.
func (s *Store) Head(ctx context.Context, key string) (int64, error) {
	out, err := s.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return 0, mapErr("head "+key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// List returns every object under prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	p := s3.NewListObjectsV2Paginator(s.s3, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr("list "+prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
		}
	}
	return out, nil
}

func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%s: %w", op, ErrNotFound)
		case "AccessDenied", "Forbidden", "SignatureDoesNotMatch", "InvalidAccessKeyId":
			return fmt.Errorf("%s: %w: %s", op, ErrForbidden, ae.ErrorMessage())
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("%s: %w", op, ErrNotFound)
		case http.StatusForbidden:
			return fmt.Errorf("%s: %w", op, ErrForbidden)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
