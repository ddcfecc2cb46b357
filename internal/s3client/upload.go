package s3client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Uploader's defaults.
const (
	DefaultPartSize           = 8 << 20
	DefaultConcurrency        = 4
	DefaultMultipartThreshold = 64 << 20
	minPartSize               = 5 << 20
	maxParts                  = 10000
	defaultContentType        = "application/octet-stream"
)

// Uploader is the one S3 uploader of the project, used by the edge (edge/blobs) and by
// the agent (agent/blobstore) against R2 and the embedded store. Put streams; how
// depends on what the body is:
//   - known length (a seekable reader such as a file or bytes.Reader, or Upload.Size > 0)
//     up to MultipartThreshold (64 MiB): one PUT with Content-Length, never buffered. A
//     seekable body is hashed for SigV4 by a first pass over it (plain HTTP only; over
//     HTTPS the SDK sends UNSIGNED-PAYLOAD); an unseekable one is sent as UNSIGNED-PAYLOAD
//     and read once, failing before its last bytes if it is shorter or longer than declared.
//   - known length above the threshold: multipart, parts read straight from the file
//     (io.ReaderAt) or, for a stream, through a fixed set of buffers.
//   - unknown length (a pipe, a tar | zstd stream): the first 256 KiB decide; a body that
//     ends within one part (8 MiB) goes in one PUT from memory, a longer one multipart.
//
// Multipart parts are all PartSize bytes but the last (R2 requires equal parts), at most
// Concurrency in flight and Concurrency+1 buffers per upload; a failed upload is aborted.
type Uploader struct {
	S3     *s3.Client
	Bucket string

	// Tuning. Zero values mean the defaults above.
	PartSize           int64 // multipart part size, at least 5 MiB
	Concurrency        int   // parts in flight during a multipart upload
	MultipartThreshold int64 // known-length bodies above this go multipart
}

// Upload is what Put stores besides the body.
type Upload struct {
	ContentType string            // "" means application/octet-stream
	Metadata    map[string]string // x-amz-meta-*
	Size        int64             // > 0: the body's declared length; otherwise unknown
}

func (c *Uploader) partSize() int64 {
	if c.PartSize >= minPartSize {
		return c.PartSize
	}
	return DefaultPartSize
}

func (c *Uploader) concurrency() int {
	if c.Concurrency > 0 {
		return c.Concurrency
	}
	return DefaultConcurrency
}

func (c *Uploader) threshold() int64 {
	if c.MultipartThreshold > 0 {
		return c.MultipartThreshold
	}
	return DefaultMultipartThreshold
}

// Put stores r under key. See Uploader for how the body travels.
func (c *Uploader) Put(ctx context.Context, key string, r io.Reader, meta Upload) error {
	h := header{contentType: meta.ContentType, metadata: meta.Metadata}
	if h.contentType == "" {
		h.contentType = defaultContentType
	}
	size, known, seekable := meta.Size, meta.Size > 0, false
	if s, ok := r.(io.Seeker); ok {
		n, err := remaining(s)
		switch {
		case err != nil: // an *os.File on a pipe: treat it as the stream it is
			r = plainReader{r}
		case known && n != size:
			return fmt.Errorf("declared size %d, body has %d bytes", size, n)
		default:
			size, known, seekable = n, true, true
		}
	}
	var err error
	switch {
	case known && size <= c.threshold():
		err = c.putOne(ctx, key, r, size, h)
	case known:
		if ra, ok := r.(io.ReaderAt); ok && seekable {
			err = c.putMultipart(ctx, key, h, sectionParts(ra, offset(r), size, c.partSizeFor(size)))
		} else {
			src := newBufferedSource(&exactReader{r: r, left: size}, c.partSizeFor(size), c.concurrency()+1)
			err = c.putMultipart(ctx, key, h, src.next)
		}
	default:
		err = c.putUnknown(ctx, key, r, h)
	}
	return err
}

// plainReader hides everything but Read.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

type header struct {
	contentType string
	metadata    map[string]string
}

func remaining(s io.Seeker) (int64, error) {
	cur, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	end, err := s.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	_, err = s.Seek(cur, io.SeekStart)
	return end - cur, err
}

func offset(r io.Reader) int64 {
	if s, ok := r.(io.Seeker); ok {
		if off, err := s.Seek(0, io.SeekCurrent); err == nil {
			return off
		}
	}
	return 0
}

// partSizeFor grows the part size so that size fits in 10,000 parts.
func (c *Uploader) partSizeFor(size int64) int64 {
	ps := c.partSize()
	if need := (size + maxParts - 1) / maxParts; need > ps {
		ps = (need + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

// putOne sends one PUT of exactly size bytes.
func (c *Uploader) putOne(ctx context.Context, key string, r io.Reader, size int64, h header) error {
	in := &s3.PutObjectInput{
		Bucket:        &c.Bucket,
		Key:           &key,
		Body:          r,
		ContentLength: aws.Int64(size),
		ContentType:   &h.contentType,
		Metadata:      h.metadata,
	}
	var opts []func(*s3.Options)
	if _, ok := r.(io.Seeker); !ok {
		// The SDK hashes a body before signing it over plain HTTP, which needs a second
		// pass; an unseekable body is signed as UNSIGNED-PAYLOAD and read once.
		in.Body = &exactReader{r: r, left: size}
		opts = append(opts, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	}
	_, err := c.S3.PutObject(ctx, in, opts...)
	return err
}

// putUnknown reads the start of a body of unknown length: a short body goes in one PUT,
// a body longer than one part multipart.
func (c *Uploader) putUnknown(ctx context.Context, key string, r io.Reader, h header) error {
	head := make([]byte, smallBody)
	n, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return c.putOne(ctx, key, bytes.NewReader(head[:n]), int64(n), h)
	case err != nil:
		return err
	}
	src := newBufferedSource(r, c.partSize(), c.concurrency()+1)
	first := src.buf()
	copy(first, head)
	m, err := io.ReadFull(r, first[len(head):])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return c.putOne(ctx, key, bytes.NewReader(first[:len(head)+m]), int64(len(head)+m), h)
	case err != nil:
		return err
	}
	second, more, err := src.next()
	switch {
	case err != nil:
		return err
	case !more:
		return c.putOne(ctx, key, bytes.NewReader(first), int64(len(first)), h)
	}
	src.pending = []part{src.part(first), second}
	return c.putMultipart(ctx, key, h, src.next)
}

// smallBody is how much of a body of unknown length is read before deciding whether it
// needs a part buffer: log segments (about 64 KiB) stay below it.
const smallBody = 256 << 10

// part is one multipart part: a seekable body and, for a buffer, how to give it back.
type part struct {
	body    io.ReadSeeker
	size    int64
	release func()
}

// partSource yields parts in order; more is false after the last one.
type partSource func() (p part, more bool, err error)

func sectionParts(ra io.ReaderAt, off, size, ps int64) partSource {
	var done int64
	return func() (part, bool, error) {
		if done >= size {
			return part{}, false, nil
		}
		n := min(ps, size-done)
		p := part{body: io.NewSectionReader(ra, off+done, n), size: n}
		done += n
		return p, true, nil
	}
}

// bufferedSource reads a stream into parts of ps bytes, using at most n buffers for the
// whole upload; a buffer comes back when its part has been uploaded.
type bufferedSource struct {
	r       io.Reader
	ps      int64
	free    chan []byte
	made, n int
	pending []part
	eof     bool
}

func newBufferedSource(r io.Reader, ps int64, n int) *bufferedSource {
	return &bufferedSource{r: r, ps: ps, n: n, free: make(chan []byte, n)}
}

func (s *bufferedSource) buf() []byte {
	select {
	case b := <-s.free:
		return b
	default:
	}
	if s.made < s.n {
		s.made++
		return make([]byte, s.ps)
	}
	return <-s.free
}

func (s *bufferedSource) part(b []byte) part {
	return part{body: bytes.NewReader(b), size: int64(len(b)), release: func() { s.free <- b[:s.ps] }}
}

func (s *bufferedSource) next() (part, bool, error) {
	if len(s.pending) > 0 {
		p := s.pending[0]
		s.pending = s.pending[1:]
		return p, true, nil
	}
	if s.eof {
		return part{}, false, nil
	}
	b := s.buf()
	n, err := io.ReadFull(s.r, b)
	switch {
	case err == io.EOF:
		s.free <- b
		return part{}, false, nil
	case err == io.ErrUnexpectedEOF:
		s.eof = true
	case err != nil:
		s.free <- b
		return part{}, false, err
	}
	return s.part(b[:n]), true, nil
}

// putMultipart uploads the parts with bounded concurrency and completes the upload, or
// aborts it on any failure.
func (c *Uploader) putMultipart(ctx context.Context, key string, h header, next partSource) (err error) {
	created, err := c.S3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &c.Bucket, Key: &key, ContentType: &h.contentType, Metadata: h.metadata,
	})
	if err != nil {
		return err
	}
	id := created.UploadId
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = c.S3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &c.Bucket, Key: &key, UploadId: id})
		}
	}()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		done  []types.CompletedPart
		slots = make(chan struct{}, c.concurrency())
	)
	for number := int32(1); ; number++ {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		p, ok, rerr := next()
		if rerr != nil || !ok {
			<-slots
			if rerr != nil {
				cancel(rerr)
			}
			break
		}
		if number > maxParts {
			<-slots
			if p.release != nil {
				p.release()
			}
			cancel(fmt.Errorf("body exceeds %d parts", maxParts))
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if p.release != nil {
				defer p.release()
			}
			out, err := c.S3.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: &c.Bucket, Key: &key, UploadId: id, PartNumber: aws.Int32(number),
				Body: p.body, ContentLength: aws.Int64(p.size),
			})
			if err != nil {
				cancel(fmt.Errorf("part %d: %w", number, err))
				return
			}
			mu.Lock()
			done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(number)})
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	slices.SortFunc(done, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	_, err = c.S3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &c.Bucket, Key: &key, UploadId: id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	})
	return err
}

// exactReader passes exactly left bytes. If the source has fewer or more, it fails
// before handing over the last bytes, so the server sees a short body and stores nothing
// rather than a complete request for the wrong content.
type exactReader struct {
	r    io.Reader
	left int64
}

var (
	errTooLong  = errors.New("body is longer than its declared size")
	errTooShort = errors.New("body is shorter than its declared size")
)

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	switch {
	case e.left > 0 && err == io.EOF:
		return 0, errTooShort
	case e.left > 0 || err != nil && err != io.EOF:
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	if err == nil { // exactly at the declared end: the source must be too
		var one [1]byte
		if m, _ := io.ReadFull(e.r, one[:]); m > 0 {
			return 0, errTooLong
		}
	}
	return n, io.EOF
}
