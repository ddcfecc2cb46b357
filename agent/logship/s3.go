package logship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/flare-dispatch/flare-dispatch/internal/s3client"
)

// S3Config is an S3-compatible bucket and a credential for it: R2 in production, the
// embedded store of `flare up` locally.
type S3Config struct {
	Endpoint    string // e.g. https://<account>.r2.cloudflarestorage.com or http://127.0.0.1:port
	Bucket      string
	AccessKeyID string
	Secret      string
	HTTPClient  *http.Client // nil: the SDK's default
}

// S3Sink stores log segments with the S3 API (path-style, region "auto", checksums
// only where required: the settings R2 needs).
type S3Sink struct {
	client *s3.Client
	bucket string
}

// NewS3Sink returns a sink for the bucket.
func NewS3Sink(cfg S3Config) (*S3Sink, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("logship: S3 endpoint and bucket are required")
	}
	return &S3Sink{client: s3client.New(cfg.Endpoint, cfg.AccessKeyID, cfg.Secret, cfg.HTTPClient), bucket: cfg.Bucket}, nil
}

// Put stores one object.
func (s *S3Sink) Put(ctx context.Context, key string, body []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/x-ndjson"),
	})
	if err != nil {
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) && refused(re.HTTPStatusCode()) {
			return fmt.Errorf("s3 put %s: %w: %w", key, ErrRefused, err)
		}
		return fmt.Errorf("s3 put %s: %w", key, err)
	}
	return nil
}

// refused is a status that a retry does not change: a 4xx other than timeout,
// conflict and throttling.
func refused(status int) bool {
	return status >= 400 && status < 500 && status != 408 && status != 409 && status != 429
}

// List returns every key under prefix, across pages.
func (s *S3Sink) List(ctx context.Context, prefix string) ([]string, error) {
	keys, _, err := s.ListSize(ctx, prefix)
	return keys, err
}

// ListSize returns every key under prefix and their total size (what earlier attempts
// spent of the run's log quota).
func (s *S3Sink) ListSize(ctx context.Context, prefix string) ([]string, int64, error) {
	var keys []string
	var total int64
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("s3 list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
			total += aws.ToInt64(o.Size)
		}
	}
	return keys, total, nil
}

var (
	_ Sink   = (*S3Sink)(nil)
	_ Lister = (*S3Sink)(nil)
)
