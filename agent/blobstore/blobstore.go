// Package blobstore is the agent's object storage client for artifacts and caches: the
// S3 API with the short-lived credential scoped to the execution's prefixes that the
// edge minted (R2 in production, the embedded store of `flare up` locally).
//
// Put streams a body of unknown length: the first part decides between one PUT (a body
// that fits in one part) and a multipart upload of equal parts (R2 requires all parts
// but the last to have the same size) with a few parts in flight, so an archive being
// written by a tar | zstd pipeline is uploaded while it is produced, in bounded memory.
package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/flare-dispatch/flare-dispatch/internal/s3client"
)

// Tuning defaults.
const (
	DefaultPartSize    = 8 << 20
	DefaultConcurrency = 4
	minPartSize        = 5 << 20
	maxParts           = 10000
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
	PartSize                              int64 // default DefaultPartSize
	Concurrency                           int   // parts in flight; default DefaultConcurrency
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
	Key  string
	Size int64
}

// New returns a store.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("blobstore: endpoint and bucket are required")
	}
	st := &Store{s3: s3client.New(cfg.Endpoint, cfg.AccessKeyID, cfg.Secret, cfg.HTTPClient), bucket: cfg.Bucket,
		partSize: cfg.PartSize, concurrency: cfg.Concurrency}
	if st.partSize < minPartSize {
		st.partSize = DefaultPartSize
	}
	if st.concurrency <= 0 {
		st.concurrency = DefaultConcurrency
	}
	return st, nil
}

// Put stores everything r yields under key and returns the byte count.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	first := make([]byte, s.partSize)
	n, err := io.ReadFull(r, first)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return int64(n), s.PutBytes(ctx, key, first[:n], contentType)
	case err != nil:
		return 0, err
	}
	return s.multipart(ctx, key, contentType, first, r)
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

func (s *Store) multipart(ctx context.Context, key, contentType string, first []byte, r io.Reader) (total int64, err error) {
	created, err := s.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key, ContentType: &contentType})
	if err != nil {
		return 0, mapErr("create multipart "+key, err)
	}
	id := created.UploadId
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = s.s3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: id})
		}
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	pool := make(chan []byte, s.concurrency+1)
	for range s.concurrency {
		pool <- make([]byte, s.partSize)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		parts []types.CompletedPart
	)
	upload := func(num int32, buf []byte, n int) {
		defer wg.Done()
		defer func() { pool <- buf[:cap(buf)] }()
		out, err := s.s3.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &key, UploadId: id, PartNumber: aws.Int32(num),
			Body: bytes.NewReader(buf[:n]), ContentLength: aws.Int64(int64(n)),
		})
		if err != nil {
			cancel(mapErr(fmt.Sprintf("upload part %d of %s", num, key), err))
			return
		}
		mu.Lock()
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		mu.Unlock()
	}
	buf, n := first, len(first)
	for num := int32(1); ; num++ {
		if num > maxParts {
			cancel(fmt.Errorf("%s: more than %d parts", key, maxParts))
			break
		}
		total += int64(n)
		wg.Add(1)
		go upload(num, buf, n)
		if n < int(s.partSize) {
			break // that was the last part
		}
		select {
		case buf = <-pool:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if errors.Is(rerr, io.EOF) {
			pool <- buf
			break
		}
		if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			pool <- buf
			cancel(rerr)
			break
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return total, err
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	_, err = s.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	return total, mapErr("complete multipart "+key, err)
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
			out = append(out, Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)})
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
