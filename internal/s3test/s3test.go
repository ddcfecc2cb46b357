// Package s3test runs the local stack's embedded S3 store in process for the agent's
// tests, with credentials scoped to one execution as the edge mints them.
package s3test

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/local/s3store"
)

const (
	adminID     = "test-admin"
	adminSecret = "test-admin-secret-test-admin-secret"
)

var root = []byte("0123456789abcdef0123456789abcdef")

// Store is a running store.
type Store struct {
	URL    string
	Bucket string
	admin  *s3.Client
}

// Start serves a fresh store until the test ends.
func Start(t testing.TB) *Store {
	t.Helper()
	st, err := s3store.New(t.TempDir(), root, adminID, adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(st.Handler())
	t.Cleanup(func() { srv.Close(); _ = st.Close() })
	return &Store{URL: srv.URL, Bucket: st.Bucket(), admin: client(srv.URL, adminID, adminSecret)}
}

// Credential mints the scoped credential the edge would give exec's agent.
func (s *Store) Credential(t testing.TB, exec, repo string) (id, secret string) {
	t.Helper()
	id, secret, err := blobcred.Mint(root, exec, blobcred.ExecGrants(exec, repo, false), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id, secret
}

// Keys lists every key under prefix with the admin credential.
func (s *Store) Keys(t testing.TB, prefix string) []string {
	t.Helper()
	out, err := s.admin.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// Get reads one object with the admin credential.
func (s *Store) Get(t testing.TB, key string) string {
	t.Helper()
	out, err := s.admin.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func client(url, id, secret string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     "auto",
		BaseEndpoint:               aws.String(url),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(id, secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// AdminCredential is the store's unrestricted credential (what the edge itself holds).
func (s *Store) AdminCredential() (id, secret string) { return adminID, adminSecret }
