//go:build js && wasm

// Package r2 is the edge's Blobs port over a Worker's R2 binding (and the store
// behind the agents' S3 endpoint, edge/cloudflare/s3api), written on the runtime's
// own Await: syumai/workers' r2 package buffers every body in Go memory (which a
// wasm instance never gives back), lists without a prefix, has no multipart uploads,
// and its await helper leaks a callback per call.
//
// Bodies stream both ways: a Put of known size writes into a FixedLengthStream that
// R2 reads (R2 takes a stream only when its length is known), a Get returns the
// object's ReadableStream. A Put whose body fails or has the wrong length aborts the
// stream, and R2 keeps the previous object.
package r2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall/js"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/s3api"
)

// Bucket is one R2 binding.
type Bucket struct {
	b js.Value
}

var (
	_                   edge.Blobs       = (*Bucket)(nil)
	_                   s3api.Multipart  = (*Bucket)(nil)
	_                   s3api.ETagPutter = (*Bucket)(nil)
	jsFixedLengthStream                  = js.Global().Get("FixedLengthStream")
	jsArray                              = js.Global().Get("Array")
)

// New returns the bucket bound as binding (wrangler.jsonc r2_buckets).
func New(binding string) (*Bucket, error) {
	b := cloudflare.Env().Get(binding)
	if b.Type() != js.TypeObject {
		return nil, fmt.Errorf("r2: binding %s is not configured", binding)
	}
	return &Bucket{b: b}, nil
}

// chunk is how much of a body crosses into JavaScript per write.
const chunk = 64 << 10

func (b *Bucket) await(ctx context.Context, obj js.Value, method string, args ...any) (js.Value, error) {
	var p js.Value
	if err := cloudflare.Try(func() { p = obj.Call(method, args...) }); err != nil {
		return js.Value{}, err
	}
	return cloudflare.Await(ctx, p)
}

// Put implements edge.Blobs.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, meta edge.BlobMeta) error {
	_, err := b.PutETag(ctx, key, r, meta)
	return err
}

// PutETag implements s3api.ETagPutter: Put, returning the stored object's ETag.
func (b *Bucket) PutETag(ctx context.Context, key string, r io.Reader, meta edge.BlobMeta) (string, error) {
	opts := putOptions(meta)
	var res js.Value
	var err error
	if meta.Size > 0 {
		res, err = b.stream(ctx, meta.Size, r, func(body js.Value) (js.Value, error) {
			var p js.Value
			err := cloudflare.Try(func() { p = b.b.Call("put", key, body, opts) })
			return p, err
		})
	} else {
		var data []byte
		if data, err = io.ReadAll(r); err == nil {
			res, err = b.await(ctx, b.b, "put", key, cloudflare.BytesToJS(data), opts)
		}
	}
	if err != nil {
		return "", fmt.Errorf("r2: put %s: %w", key, err)
	}
	return res.Get("httpEtag").String(), nil
}

// stream writes exactly size bytes of r into a FixedLengthStream whose readable side
// start hands to R2, and returns what start's promise resolves to. Any failure of r,
// or a length other than size, aborts the stream, which fails the R2 operation.
func (b *Bucket) stream(ctx context.Context, size int64, r io.Reader, start func(body js.Value) (js.Value, error)) (js.Value, error) {
	var fls js.Value
	if err := cloudflare.Try(func() { fls = jsFixedLengthStream.New(float64(size)) }); err != nil {
		return js.Value{}, err
	}
	// Writes wait for R2 to take each chunk; if R2 fails first, they must stop waiting.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := cloudflare.NewStreamWriter(wctx, fls.Get("writable"))
	if err != nil {
		return js.Value{}, err
	}
	p, err := start(fls.Get("readable"))
	if err != nil {
		w.Abort(err)
		return js.Value{}, err
	}
	type result struct {
		v   js.Value
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := cloudflare.Await(ctx, p)
		done <- result{v, err}
		stop()
	}()
	fail := func(err error) (js.Value, error) {
		w.Abort(err)
		<-done // the operation fails with the stream
		return js.Value{}, err
	}
	buf := make([]byte, chunk)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if n+int64(k) > size {
				return fail(fmt.Errorf("body is longer than the declared %d bytes", size))
			}
			if _, err := w.Write(buf[:k]); err != nil {
				res := <-done
				if res.err != nil {
					return js.Value{}, res.err
				}
				return js.Value{}, err
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fail(rerr)
		}
	}
	if n != size {
		return fail(fmt.Errorf("body has %d bytes, declared %d", n, size))
	}
	cerr := w.Close()
	res := <-done
	if res.err != nil {
		return js.Value{}, res.err
	}
	if cerr != nil && !errors.Is(cerr, context.Canceled) {
		return js.Value{}, cerr
	}
	return res.v, nil
}

func putOptions(meta edge.BlobMeta) js.Value {
	opts := cloudflare.Object()
	ct := meta.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	hm := cloudflare.Object()
	hm.Set("contentType", ct)
	opts.Set("httpMetadata", hm)
	cm := cloudflare.Object()
	for k, v := range meta.Metadata {
		cm.Set(k, v)
	}
	opts.Set("customMetadata", cm)
	return opts
}

// Get implements edge.Blobs.
func (b *Bucket) Get(ctx context.Context, key string) (io.ReadCloser, edge.BlobMeta, error) {
	obj, err := b.await(ctx, b.b, "get", key)
	if err != nil {
		return nil, edge.BlobMeta{}, fmt.Errorf("r2: get %s: %w", key, err)
	}
	if obj.IsNull() || obj.IsUndefined() {
		return nil, edge.BlobMeta{}, fmt.Errorf("r2: get %s: %w", key, edge.ErrBlobNotFound)
	}
	return cloudflare.ReadStream(ctx, obj.Get("body")), objectMeta(obj), nil
}

// Head implements edge.Blobs.
func (b *Bucket) Head(ctx context.Context, key string) (edge.BlobMeta, error) {
	obj, err := b.await(ctx, b.b, "head", key)
	if err != nil {
		return edge.BlobMeta{}, fmt.Errorf("r2: head %s: %w", key, err)
	}
	if obj.IsNull() || obj.IsUndefined() {
		return edge.BlobMeta{}, fmt.Errorf("r2: head %s: %w", key, edge.ErrBlobNotFound)
	}
	return objectMeta(obj), nil
}

func objectMeta(obj js.Value) edge.BlobMeta {
	m := edge.BlobMeta{Size: int64(obj.Get("size").Float()), ETag: obj.Get("httpEtag").String(), ContentType: "application/octet-stream"}
	if hm := obj.Get("httpMetadata"); hm.Type() == js.TypeObject {
		if ct := hm.Get("contentType"); ct.Type() == js.TypeString {
			m.ContentType = ct.String()
		}
	}
	if cm := obj.Get("customMetadata"); cm.Type() == js.TypeObject {
		entries := js.Global().Get("Object").Call("entries", cm)
		for i, n := 0, entries.Length(); i < n; i++ {
			if m.Metadata == nil {
				m.Metadata = map[string]string{}
			}
			e := entries.Index(i)
			m.Metadata[e.Index(0).String()] = e.Index(1).String()
		}
	}
	return m
}

// List implements edge.Blobs, following R2's cursor across pages.
func (b *Bucket) List(ctx context.Context, prefix string) ([]edge.BlobInfo, error) {
	var out []edge.BlobInfo
	cursor := ""
	for {
		opts := cloudflare.Object()
		opts.Set("prefix", prefix)
		opts.Set("limit", 1000)
		if cursor != "" {
			opts.Set("cursor", cursor)
		}
		res, err := b.await(ctx, b.b, "list", opts)
		if err != nil {
			return nil, fmt.Errorf("r2: list %s: %w", prefix, err)
		}
		objs := res.Get("objects")
		for i, n := 0, objs.Length(); i < n; i++ {
			o := objs.Index(i)
			out = append(out, edge.BlobInfo{Key: o.Get("key").String(), Size: int64(o.Get("size").Float()), ETag: o.Get("httpEtag").String()})
		}
		if !res.Get("truncated").Truthy() {
			return out, nil
		}
		cursor = res.Get("cursor").String()
	}
}

// Delete implements edge.Blobs.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if _, err := b.await(ctx, b.b, "delete", key); err != nil {
		return fmt.Errorf("r2: delete %s: %w", key, err)
	}
	return nil
}

// CreateMultipartUpload implements s3api.Multipart.
func (b *Bucket) CreateMultipartUpload(ctx context.Context, key string, meta edge.BlobMeta) (string, error) {
	up, err := b.await(ctx, b.b, "createMultipartUpload", key, putOptions(meta))
	if err != nil {
		return "", fmt.Errorf("r2: create multipart upload %s: %w", key, err)
	}
	return up.Get("uploadId").String(), nil
}

func (b *Bucket) upload(key, id string) (js.Value, error) {
	var up js.Value
	err := cloudflare.Try(func() { up = b.b.Call("resumeMultipartUpload", key, id) })
	return up, err
}

// UploadPart implements s3api.Multipart. The ETag is quoted, as S3 clients expect.
func (b *Bucket) UploadPart(ctx context.Context, key, id string, n int, r io.Reader, size int64) (string, error) {
	up, err := b.upload(key, id)
	if err != nil {
		return "", multipartErr("upload part", key, err)
	}
	var res js.Value
	if size > 0 {
		res, err = b.stream(ctx, size, r, func(body js.Value) (js.Value, error) {
			var p js.Value
			err := cloudflare.Try(func() { p = up.Call("uploadPart", n, body) })
			return p, err
		})
	} else {
		res, err = b.await(ctx, up, "uploadPart", n, cloudflare.BytesToJS(nil))
	}
	if err != nil {
		return "", multipartErr(fmt.Sprintf("upload part %d", n), key, err)
	}
	return `"` + strings.Trim(res.Get("etag").String(), `"`) + `"`, nil
}

// CompleteMultipartUpload implements s3api.Multipart.
func (b *Bucket) CompleteMultipartUpload(ctx context.Context, key, id string, parts []s3api.Part) (string, error) {
	up, err := b.upload(key, id)
	if err != nil {
		return "", multipartErr("complete", key, err)
	}
	list := jsArray.New()
	for _, p := range parts {
		o := cloudflare.Object()
		o.Set("partNumber", p.Number)
		o.Set("etag", strings.Trim(p.ETag, `"`))
		list.Call("push", o)
	}
	obj, err := b.await(ctx, up, "complete", list)
	if err != nil {
		return "", multipartErr("complete", key, err)
	}
	return obj.Get("httpEtag").String(), nil
}

// AbortMultipartUpload implements s3api.Multipart.
func (b *Bucket) AbortMultipartUpload(ctx context.Context, key, id string) error {
	up, err := b.upload(key, id)
	if err == nil {
		_, err = b.await(ctx, up, "abort")
	}
	if err != nil {
		return multipartErr("abort", key, err)
	}
	return nil
}

// multipartErr maps R2's error codes (in the message, "(10024)") to s3api's errors.
func multipartErr(op, key string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "(10024)"):
		return fmt.Errorf("r2: %s %s: %w: %v", op, key, s3api.ErrNoSuchUpload, err)
	case strings.Contains(msg, "(10025)"), strings.Contains(msg, "(10011)"), strings.Contains(msg, "(10048)"):
		return fmt.Errorf("r2: %s %s: %w: %v", op, key, s3api.ErrInvalidPart, err)
	}
	return fmt.Errorf("r2: %s %s: %w", op, key, err)
}
