// Package blobs is the edge.Blobs adapter over the S3 API (aws-sdk-go-v2), configured
// the way R2 needs it: region "auto", path-style URLs, an explicit endpoint, and request
// checksums only when an operation requires them. The same client talks to R2 in
// production and to the embedded store (edge/local/s3store) locally.
//
// Put streams through s3client.Uploader, the uploader the agent uses too.
package blobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/flare-dispatch/flare-dispatch/internal/s3client"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Client is an edge.Blobs over one bucket of an S3-compatible endpoint.
type Client struct {
	s3     *s3.Client
	bucket string

	// Tuning of Put; set before first use. Zero values mean s3client's defaults.
	PartSize           int64 // multipart part size, at least 5 MiB
	Concurrency        int   // parts in flight during a multipart upload
	MultipartThreshold int64 // known-length bodies above this go multipart
}

// New returns a client for bucket at endpoint (e.g. https://<account>.r2.cloudflarestorage.com
// or the local store's URL) with a static key pair. httpClient nil means the SDK's default.
func New(endpoint, bucket, accessKeyID, secret string, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("blobs: endpoint %q: want an http(s) URL", endpoint)
	}
	if bucket == "" || accessKeyID == "" || secret == "" {
		return nil, errors.New("blobs: bucket, access key id and secret are required")
	}
	return &Client{s3: s3client.New(endpoint, accessKeyID, secret, httpClient), bucket: bucket}, nil
}

// S3 exposes the underlying SDK client for operations the port does not cover.
func (c *Client) S3() *s3.Client { return c.s3 }

// Put stores r under key (see s3client.Uploader for how the body travels).
func (c *Client) Put(ctx context.Context, key string, r io.Reader, meta edge.BlobMeta) error {
	if err := checkMeta(meta.Metadata); err != nil {
		return fmt.Errorf("blobs: put %s: %w", key, err)
	}
	u := s3client.Uploader{S3: c.s3, Bucket: c.bucket, PartSize: c.PartSize, Concurrency: c.Concurrency, MultipartThreshold: c.MultipartThreshold}
	if err := u.Put(ctx, key, r, s3client.Upload{ContentType: meta.ContentType, Metadata: meta.Metadata, Size: meta.Size}); err != nil {
		return fmt.Errorf("blobs: put %s: %w", key, err)
	}
	return nil
}

// checkMeta keeps metadata to what survives an HTTP header on every S3 implementation.
func checkMeta(m map[string]string) error {
	for k, v := range m {
		if k == "" || strings.IndexFunc(k, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
		}) >= 0 {
			return fmt.Errorf("metadata key %q: want [A-Za-z0-9_-]+", k)
		}
		if strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
			return fmt.Errorf("metadata %q: value must be printable ASCII", k)
		}
	}
	return nil
}

// Get opens the object's body; the caller closes it.
func (c *Client) Get(ctx context.Context, key string) (io.ReadCloser, edge.BlobMeta, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &c.bucket, Key: &key})
	if err != nil {
		return nil, edge.BlobMeta{}, fmt.Errorf("blobs: get %s: %w", key, mapErr(err))
	}
	return out.Body, blobMeta(out.ContentType, out.ContentLength, out.ETag, out.Metadata), nil
}

// Head returns the object's metadata.
func (c *Client) Head(ctx context.Context, key string) (edge.BlobMeta, error) {
	out, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &c.bucket, Key: &key})
	if err != nil {
		return edge.BlobMeta{}, fmt.Errorf("blobs: head %s: %w", key, mapErr(err))
	}
	return blobMeta(out.ContentType, out.ContentLength, out.ETag, out.Metadata), nil
}

// List returns every object under prefix, following continuation tokens.
func (c *Client) List(ctx context.Context, prefix string) ([]edge.BlobInfo, error) {
	var out []edge.BlobInfo
	pages := s3.NewListObjectsV2Paginator(c.s3, &s3.ListObjectsV2Input{Bucket: &c.bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("blobs: list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, edge.BlobInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag)})
		}
	}
	return out, nil
}

// Delete removes the object; an absent key is not an error.
func (c *Client) Delete(ctx context.Context, key string) error {
	_, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &c.bucket, Key: &key})
	if err != nil && !errors.Is(mapErr(err), edge.ErrBlobNotFound) {
		return fmt.Errorf("blobs: delete %s: %w", key, err)
	}
	return nil
}

// PresignGet returns a URL that GETs the object without credentials until ttl passes
// (and no longer than the client's own credentials last).
func (c *Client) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	req, err := s3.NewPresignClient(c.s3).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &c.bucket, Key: &key},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("blobs: presign %s: %w", key, err)
	}
	return req.URL, nil
}

func blobMeta(ct *string, size *int64, etag *string, md map[string]string) edge.BlobMeta {
	m := edge.BlobMeta{ContentType: aws.ToString(ct), Size: aws.ToInt64(size), ETag: aws.ToString(etag)}
	if len(md) > 0 {
		m.Metadata = make(map[string]string, len(md))
		for k, v := range md {
			m.Metadata[strings.ToLower(k)] = v
		}
	}
	return m
}

// mapErr turns S3's "no such key" (GET: NoSuchKey, HEAD: a bare 404 NotFound) into
// edge.ErrBlobNotFound; everything else, NoSuchBucket included, stays as it is.
func mapErr(err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%w (%s)", edge.ErrBlobNotFound, api.ErrorCode())
		}
	}
	return err
}

var _ edge.Blobs = (*Client)(nil)
