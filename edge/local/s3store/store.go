// Package s3store is the embedded S3-compatible object store of `flare up`: the R2 bucket
// of a local stack. It serves one bucket over the S3 API (path-style URLs) with
// github.com/johannesboyne/gofakes3, keeps objects under a directory so they survive a
// restart, and lets a request through only if edge/s3verify (the check the Worker's /s3
// endpoint makes too) finds a valid AWS Signature V4 from either the edge's admin
// credential or a scoped credential minted by blobcred, for keys inside that
// credential's grants. Refusals are S3 XML errors (403 AccessDenied,
// SignatureDoesNotMatch, InvalidAccessKeyId, …), written by s3verify.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/johannesboyne/gofakes3"

	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/s3verify"
)

// DefaultBucket is the bucket name when WithBucket is not given.
const DefaultBucket = "flare"

// Store is the embedded S3 server.
type Store struct {
	bucket  string
	now     func() time.Time
	log     *slog.Logger
	verify  *s3verify.Verifier
	backend *backend
	s3      http.Handler
	closed  atomic.Bool
	ended   atomic.Pointer[s3verify.Ended]
}

// Option configures New.
type Option func(*Store)

// WithBucket names the bucket (default "flare").
func WithBucket(name string) Option { return func(s *Store) { s.bucket = name } }

// WithClock replaces time.Now for signature times, credential expiry and Last-Modified.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithLogger sets where refusals and storage problems are logged (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// New opens (or creates) the store under dir. root verifies scoped credentials (see
// blobcred.Mint; nil accepts none); adminKeyID/adminSecret is the edge's full-access
// credential (empty id: none).
func New(dir string, root []byte, adminKeyID, adminSecret string, opts ...Option) (*Store, error) {
	s := &Store{bucket: DefaultBucket, now: time.Now, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	if root != nil && len(root) < blobcred.MinRootBytes {
		return nil, blobcred.ErrRoot
	}
	if adminKeyID != "" {
		if strings.HasPrefix(adminKeyID, blobcred.KeyIDPrefix) || strings.ContainsAny(adminKeyID, "/, =") {
			return nil, fmt.Errorf("s3store: admin key id %q must not start with %q or contain '/', ',', ' ' or '='", adminKeyID, blobcred.KeyIDPrefix)
		}
		if len(adminSecret) < 16 {
			return nil, errors.New("s3store: admin secret shorter than 16 characters")
		}
	}
	be, err := openBackend(dir, s.bucket, s.now, s.log)
	if err != nil {
		return nil, fmt.Errorf("s3store: open %s: %w", dir, err)
	}
	s.backend = be
	s.verify = &s3verify.Verifier{
		Auth:   &blobcred.Authenticator{Root: root, AdminKeyID: adminKeyID, AdminSecret: adminSecret},
		Bucket: s.bucket, Now: s.now,
		Ended: func(ctx context.Context, exec string) (bool, error) {
			if f := s.ended.Load(); f != nil {
				return (*f)(ctx, exec)
			}
			return false, nil
		},
	}
	fake := gofakes3.New(be,
		gofakes3.WithTimeSource(clock(s.now)),
		gofakes3.WithTimeSkewLimit(0), // the authenticator checks request times
		gofakes3.WithLogger(fakeLog{s.log}),
	)
	s.s3 = fake.Server()
	return s, nil
}

// SetEnded makes the store refuse the writes of an ended execution's scoped
// credentials (s3verify.Verifier.Ended). It may be set after the store serves: the
// metadata it looks in is opened later.
func (s *Store) SetEnded(f s3verify.Ended) { s.ended.Store(&f) }

// Bucket is the name of the one bucket the store serves.
func (s *Store) Bucket() string { return s.bucket }

// Handler is the S3 endpoint. Mount it at the root of a host: URLs are path-style
// (/<bucket>/<key>) and the signature covers the path as sent.
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// Close stops accepting requests (503 after it returns). Every write is committed by an
// atomic rename, so requests still in flight cannot leave a torn object behind.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

func (s *Store) serve(w http.ResponseWriter, r *http.Request) {
	if s.closed.Load() {
		s.verify.Fail(w, r, &blobcred.Error{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Message: "the store is closed"})
		return
	}
	p, err := s.verify.Verify(r, r)
	if err != nil {
		var exec string
		if !p.Admin {
			exec = p.Claims.Exec
		}
		s.log.Info("s3store: refused", "method", r.Method, "path", r.URL.Path, "exec", exec, "err", err)
		s.verify.Fail(w, r, err)
		return
	}
	s.s3.ServeHTTP(&onceWriter{ResponseWriter: w}, r)
}

// onceWriter drops what gofakes3 writes after a response has started: when copying a
// body fails midway (usually the client went away) it would send an error status and
// XML after the partial body.
type onceWriter struct {
	http.ResponseWriter
	started, broken bool
}

func (w *onceWriter) WriteHeader(code int) {
	if w.started {
		w.broken = true
		return
	}
	w.started = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *onceWriter) Write(b []byte) (int, error) {
	if w.broken {
		return 0, errResponseStarted
	}
	w.started = true
	return w.ResponseWriter.Write(b)
}

func (w *onceWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var errResponseStarted = errors.New("s3store: response already started")

type clock func() time.Time

func (c clock) Now() time.Time                  { return c().UTC() }
func (c clock) Since(t time.Time) time.Duration { return c().Sub(t) }

type fakeLog struct{ l *slog.Logger }

func (f fakeLog) Print(level gofakes3.LogLevel, v ...any) {
	if level != gofakes3.LogErr {
		return
	}
	for _, x := range v {
		if err, ok := x.(error); ok && clientGone(err) {
			f.l.Debug("s3store: client went away", "err", err)
			return
		}
	}
	f.l.Error("s3store: " + fmt.Sprint(v...))
}

// clientGone reports errors that mean the other end stopped: an upload cut short or a
// download abandoned. They are normal and not the store's fault.
func clientGone(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || errors.Is(err, errResponseStarted)
}
