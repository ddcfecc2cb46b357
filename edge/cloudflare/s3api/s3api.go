// Package s3api serves the subset of the S3 API that agents use, over any edge.Blobs:
// on Cloudflare it is the agents' S3 endpoint in front of the R2 binding, so that the
// Worker, not an R2 API token, decides what each agent may touch.
//
// Requests are path-style under a prefix of the Worker's own origin:
// <origin><Prefix>/<bucket>/<key>. SigV4 signs the path as sent, prefix included (an
// S3 client with BaseEndpoint "https://edge.example/s3" signs "/s3/<bucket>/<key>"),
// so the signature is verified on the request as it arrived and only the grants are
// checked on the path without the prefix.
//
// Every request must carry a valid AWS Signature V4 from a scoped credential minted
// by edge/blobcred (or the admin credential, if one is configured) and stay inside its
// grants: edge/s3verify checks that, for the embedded store too. Supported: PutObject, GetObject, HeadObject,
// DeleteObject, ListObjectsV2, and multipart uploads (Create, UploadPart, Complete,
// Abort) when the store implements Multipart. Everything else is 501 NotImplemented.
// Refusals are S3 XML errors.
package s3api

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/s3verify"
)

// Multipart is what a store needs for S3 multipart uploads. R2 requires every part but
// the last to have the same size; clients that talk to R2 already do so.
type Multipart interface {
	CreateMultipartUpload(ctx context.Context, key string, meta edge.BlobMeta) (uploadID string, err error)
	// UploadPart stores part number n (1..10000) of size bytes and returns its ETag.
	UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (etag string, err error)
	// CompleteMultipartUpload assembles the parts into the object and returns its ETag.
	CompleteMultipartUpload(ctx context.Context, key, uploadID string, parts []Part) (etag string, err error)
	AbortMultipartUpload(ctx context.Context, key, uploadID string) error
}

// Part is one uploaded part as CompleteMultipartUpload lists it.
type Part struct {
	Number int
	ETag   string
}

// ErrNoSuchUpload is returned (wrapped) by Multipart methods for an unknown upload id.
var ErrNoSuchUpload = errors.New("no such multipart upload")

// ErrInvalidPart is returned (wrapped) by CompleteMultipartUpload when a listed part
// was not uploaded or its ETag differs, or the parts' sizes break the store's rules.
var ErrInvalidPart = errors.New("invalid multipart part")

// Handler is the S3 endpoint.
type Handler struct {
	Prefix string // path prefix the endpoint is mounted at, e.g. "/s3"; "" for the root
	Bucket string // the one bucket it serves
	Auth   *blobcred.Authenticator
	Store  edge.Blobs // may implement Multipart
	Now    func() time.Time
	Log    *slog.Logger
	// Ended refuses the writes of an ended execution's credentials (s3verify.Verifier.Ended).
	Ended s3verify.Ended

	verify     *s3verify.Verifier
	verifyOnce sync.Once
}

// verifier is the shared request check, built on first use from the fields.
func (h *Handler) verifier() *s3verify.Verifier {
	h.verifyOnce.Do(func() { h.verify = &s3verify.Verifier{Auth: h.Auth, Bucket: h.Bucket, Now: h.Now, Ended: h.Ended} })
	return h.verify
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.verifier().Fail(w, r, err)
}

const s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

// maxListKeys is S3's page size limit.
const maxListKeys = 1000

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	inner, ok := h.strip(r)
	if !ok {
		h.fail(w, r, &blobcred.Error{Status: http.StatusNotFound, Code: "NoSuchBucket", Message: "the path is not under " + h.Prefix + "/" + h.Bucket})
		return
	}
	p, err := h.verifier().Verify(r, inner)
	if err != nil {
		log.Info("s3: refused", "method", r.Method, "path", r.URL.Path, "exec", p.Claims.Exec, "err", err)
		h.fail(w, r, err)
		return
	}
	_, key, _ := strings.Cut(strings.TrimPrefix(inner.URL.Path, "/"), "/")
	q := inner.URL.Query()
	ctx := r.Context()
	for k := range q {
		if !supportedQuery[k] {
			// A subresource (?acl, ?tagging, …) is another operation, even for the admin.
			h.fail(w, r, notImplemented("?"+k))
			return
		}
	}
	switch {
	case q.Get("uploadId") != "":
		err = h.multipart(ctx, w, inner, key, q)
	case q.Has("uploads"):
		err = h.createUpload(ctx, w, inner, key)
	case key == "" && r.Method == http.MethodGet:
		err = h.list(ctx, w, q)
	case key == "":
		err = notImplemented(r.Method + " on the bucket")
	default:
		err = h.object(ctx, w, inner, key)
	}
	if err != nil {
		switch {
		case errors.As(err, new(*blobcred.Error)):
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.Canceled):
			log.Info("s3: client went away", "method", r.Method, "key", key, "err", err)
		default:
			log.Error("s3: request failed", "method", r.Method, "key", key, "err", err)
		}
		h.fail(w, r, err)
	}
}

// supportedQuery are the query parameters of the operations served (and of SigV4's
// presigned form); any other names an operation this endpoint does not implement.
var supportedQuery = map[string]bool{
	"x-id": true, "list-type": true, "prefix": true, "delimiter": true, "max-keys": true,
	"continuation-token": true, "start-after": true, "fetch-owner": true, "encoding-type": true,
	"uploads": true, "uploadId": true, "partNumber": true,
	"X-Amz-Algorithm": true, "X-Amz-Credential": true, "X-Amz-Date": true,
	"X-Amz-Expires": true, "X-Amz-SignedHeaders": true, "X-Amz-Signature": true,
	"X-Amz-Content-Sha256": true,
}

// strip returns r as seen without the prefix (a shallow copy), or false when r is not
// under the prefix.
func (h *Handler) strip(r *http.Request) (*http.Request, bool) {
	path, ok := strings.CutPrefix(r.URL.Path, h.Prefix)
	if !ok || (path != "" && path[0] != '/') {
		return nil, false
	}
	u := *r.URL
	u.Path = path
	u.RawPath = ""
	if raw, ok := strings.CutPrefix(r.URL.RawPath, h.Prefix); ok {
		u.RawPath = raw
	}
	inner := *r
	inner.URL = &u
	return &inner, true
}

func notImplemented(what string) error {
	return &blobcred.Error{Status: http.StatusNotImplemented, Code: "NotImplemented", Message: what + " is not implemented by this endpoint"}
}

func noSuchKey() error {
	return &blobcred.Error{Status: http.StatusNotFound, Code: "NoSuchKey", Message: "The specified key does not exist."}
}

func noSuchUpload() error {
	return &blobcred.Error{Status: http.StatusNotFound, Code: "NoSuchUpload", Message: "The specified multipart upload does not exist."}
}

func badRequest(code, format string, a ...any) error {
	return &blobcred.Error{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, a...)}
}

// object serves GET, HEAD, PUT and DELETE of one key.
func (h *Handler) object(ctx context.Context, w http.ResponseWriter, r *http.Request, key string) error {
	switch r.Method {
	case http.MethodGet:
		rc, meta, err := h.Store.Get(ctx, key)
		if errors.Is(err, edge.ErrBlobNotFound) {
			return noSuchKey()
		} else if err != nil {
			return err
		}
		defer rc.Close()
		writeMeta(w, meta)
		w.WriteHeader(http.StatusOK)
		if f, ok := w.(http.Flusher); ok {
			f.Flush() // stream the body: objects can be large
		}
		_, err = io.Copy(w, rc)
		if err != nil {
			// The status is out: all that is left is to cut the response short.
			panic(http.ErrAbortHandler)
		}
		return nil
	case http.MethodHead:
		meta, err := h.Store.Head(ctx, key)
		if errors.Is(err, edge.ErrBlobNotFound) {
			return noSuchKey()
		} else if err != nil {
			return err
		}
		writeMeta(w, meta)
		w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodPut:
		if r.ContentLength < 0 {
			return &blobcred.Error{Status: http.StatusLengthRequired, Code: "MissingContentLength", Message: "You must provide the Content-Length HTTP header."}
		}
		meta := requestMeta(r)
		meta.Size = r.ContentLength
		body := io.Reader(r.Body)
		if r.ContentLength == 0 {
			body = http.NoBody
		}
		etag, err := h.put(ctx, key, body, meta)
		if err != nil {
			return bodyError(err)
		}
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodDelete:
		if err := h.Store.Delete(ctx, key); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return notImplemented(r.Method + " of an object")
}

// ETagPutter is a store whose Put reports the stored object's ETag (saving a Head).
type ETagPutter interface {
	PutETag(ctx context.Context, key string, r io.Reader, meta edge.BlobMeta) (etag string, err error)
}

func (h *Handler) put(ctx context.Context, key string, r io.Reader, meta edge.BlobMeta) (string, error) {
	if p, ok := h.Store.(ETagPutter); ok {
		return p.PutETag(ctx, key, r, meta)
	}
	if err := h.Store.Put(ctx, key, r, meta); err != nil {
		return "", err
	}
	m, err := h.Store.Head(ctx, key)
	return m.ETag, err
}

// bodyError keeps the authenticator's payload-hash mismatch visible as what it is.
func bodyError(err error) error {
	var e *blobcred.Error
	if errors.As(err, &e) {
		return e
	}
	return err
}

// requestMeta reads Content-Type and x-amz-meta-* from a PUT or a multipart create.
func requestMeta(r *http.Request) edge.BlobMeta {
	meta := edge.BlobMeta{ContentType: r.Header.Get("Content-Type")}
	if meta.ContentType == "" {
		meta.ContentType = "application/octet-stream"
	}
	for k, vs := range r.Header {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-meta-"); ok && len(vs) > 0 {
			if meta.Metadata == nil {
				meta.Metadata = map[string]string{}
			}
			meta.Metadata[name] = vs[0]
		}
	}
	return meta
}

func writeMeta(w http.ResponseWriter, m edge.BlobMeta) {
	h := w.Header()
	ct := m.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	if m.ETag != "" {
		h.Set("ETag", m.ETag)
	}
	h.Set("Accept-Ranges", "none")
	for k, v := range m.Metadata {
		h.Set("X-Amz-Meta-"+k, v)
	}
}

// listResult is ListObjectsV2's answer.
type listResult struct {
	XMLName               xml.Name       `xml:"ListBucketResult"`
	NS                    string         `xml:"xmlns,attr"`
	Name                  string         `xml:"Name"`
	Prefix                string         `xml:"Prefix"`
	Delimiter             string         `xml:"Delimiter,omitempty"`
	StartAfter            string         `xml:"StartAfter,omitempty"`
	ContinuationToken     string         `xml:"ContinuationToken,omitempty"`
	NextContinuationToken string         `xml:"NextContinuationToken,omitempty"`
	EncodingType          string         `xml:"EncodingType,omitempty"`
	MaxKeys               int            `xml:"MaxKeys"`
	KeyCount              int            `xml:"KeyCount"`
	IsTruncated           bool           `xml:"IsTruncated"`
	Contents              []listObject   `xml:"Contents"`
	CommonPrefixes        []commonPrefix `xml:"CommonPrefixes"`
}

type listObject struct {
	Key          string `xml:"Key"`
	Size         int64  `xml:"Size"`
	ETag         string `xml:"ETag"`
	StorageClass string `xml:"StorageClass"`
}

type commonPrefix struct {
	Prefix string `xml:"Prefix"`
}

// list serves ListObjectsV2 (list-type=2): the store lists everything under the
// prefix and the page is cut here. The continuation token is the last key or common
// prefix of the previous page.
func (h *Handler) list(ctx context.Context, w http.ResponseWriter, q url.Values) error {
	if q.Get("list-type") != "2" {
		return notImplemented("ListObjects (v1)")
	}
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	encoding := q.Get("encoding-type")
	if encoding != "" && encoding != "url" {
		return badRequest("InvalidArgument", "encoding-type %q: only url is supported", encoding)
	}
	maxKeys := maxListKeys
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return badRequest("InvalidArgument", "max-keys %q: want a non-negative integer", v)
		}
		maxKeys = min(n, maxListKeys)
	}
	after := q.Get("start-after")
	token := q.Get("continuation-token")
	if token != "" {
		b, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return badRequest("InvalidArgument", "The continuation token provided is incorrect")
		}
		after = string(b)
	}
	all, err := h.Store.List(ctx, prefix)
	if err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Key < all[j].Key })
	res := listResult{NS: s3NS, Name: h.Bucket, Prefix: prefix, Delimiter: delim, StartAfter: q.Get("start-after"),
		ContinuationToken: token, EncodingType: encoding, MaxKeys: maxKeys}
	enc := func(s string) string {
		if encoding == "url" {
			return url.QueryEscape(s)
		}
		return s
	}
	last := ""
	for _, o := range all {
		if !strings.HasPrefix(o.Key, prefix) || o.Key <= after {
			continue
		}
		entry := o.Key
		isPrefix := false
		if delim != "" {
			if i := strings.Index(o.Key[len(prefix):], delim); i >= 0 {
				entry, isPrefix = o.Key[:len(prefix)+i+len(delim)], true
			}
		}
		if isPrefix && (entry == last || entry <= after) {
			continue // the rest of a common prefix already listed
		}
		if res.KeyCount == maxKeys {
			res.IsTruncated = true
			break
		}
		if isPrefix {
			res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: enc(entry)})
		} else {
			res.Contents = append(res.Contents, listObject{Key: enc(o.Key), Size: o.Size, ETag: o.ETag, StorageClass: "STANDARD"})
		}
		res.KeyCount++
		last = entry
	}
	if res.IsTruncated {
		// A common prefix as the token skips its remaining keys: they sort after it,
		// and "prefix/" + anything > "prefix/" only until the next prefix, so the
		// token is the prefix followed by the highest byte.
		t := last
		if delim != "" && strings.HasSuffix(last, delim) {
			t = last + "\xff"
		}
		res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(t))
	}
	return writeXML(w, http.StatusOK, res)
}

type initiateResult struct {
	XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
	NS       string   `xml:"xmlns,attr"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	UploadID string   `xml:"UploadId"`
}

type completeRequest struct {
	Parts []struct {
		PartNumber int    `xml:"PartNumber"`
		ETag       string `xml:"ETag"`
	} `xml:"Part"`
}

type completeResult struct {
	XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
	NS       string   `xml:"xmlns,attr"`
	Location string   `xml:"Location"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	ETag     string   `xml:"ETag"`
}

func (h *Handler) multipartStore() (Multipart, error) {
	mp, ok := h.Store.(Multipart)
	if !ok {
		return nil, notImplemented("multipart upload")
	}
	return mp, nil
}

func (h *Handler) createUpload(ctx context.Context, w http.ResponseWriter, r *http.Request, key string) error {
	if r.Method != http.MethodPost || key == "" {
		return notImplemented(r.Method + " ?uploads")
	}
	mp, err := h.multipartStore()
	if err != nil {
		return err
	}
	id, err := mp.CreateMultipartUpload(ctx, key, requestMeta(r))
	if err != nil {
		return err
	}
	return writeXML(w, http.StatusOK, initiateResult{NS: s3NS, Bucket: h.Bucket, Key: key, UploadID: id})
}

// maxCompleteBody bounds a CompleteMultipartUpload document (10,000 parts fit).
const maxCompleteBody = 2 << 20

func (h *Handler) multipart(ctx context.Context, w http.ResponseWriter, r *http.Request, key string, q url.Values) error {
	mp, err := h.multipartStore()
	if err != nil {
		return err
	}
	id := q.Get("uploadId")
	mapErr := func(err error) error {
		switch {
		case errors.Is(err, ErrNoSuchUpload):
			return noSuchUpload()
		case errors.Is(err, ErrInvalidPart):
			return badRequest("InvalidPart", "%v", err)
		}
		return bodyError(err)
	}
	switch r.Method {
	case http.MethodPut:
		n, err := strconv.Atoi(q.Get("partNumber"))
		if err != nil || n < 1 || n > 10000 {
			return badRequest("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
		}
		if r.ContentLength < 0 {
			return &blobcred.Error{Status: http.StatusLengthRequired, Code: "MissingContentLength", Message: "You must provide the Content-Length HTTP header."}
		}
		etag, err := mp.UploadPart(ctx, key, id, n, r.Body, r.ContentLength)
		if err != nil {
			return mapErr(err)
		}
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodPost:
		b, err := io.ReadAll(io.LimitReader(r.Body, maxCompleteBody+1))
		if err != nil {
			return bodyError(err)
		}
		if len(b) > maxCompleteBody {
			return badRequest("MalformedXML", "the CompleteMultipartUpload document is too large")
		}
		var req completeRequest
		if err := xml.Unmarshal(b, &req); err != nil || len(req.Parts) == 0 {
			return badRequest("MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
		}
		parts := make([]Part, len(req.Parts))
		for i, p := range req.Parts {
			if i > 0 && p.PartNumber <= req.Parts[i-1].PartNumber {
				return badRequest("InvalidPartOrder", "The list of parts was not in ascending order.")
			}
			parts[i] = Part{Number: p.PartNumber, ETag: p.ETag}
		}
		etag, err := mp.CompleteMultipartUpload(ctx, key, id, parts)
		if err != nil {
			return mapErr(err)
		}
		return writeXML(w, http.StatusOK, completeResult{NS: s3NS, Location: r.URL.Path, Bucket: h.Bucket, Key: key, ETag: etag})
	case http.MethodDelete:
		if err := mp.AbortMultipartUpload(ctx, key, id); err != nil && !errors.Is(err, ErrNoSuchUpload) {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return notImplemented(r.Method + " ?uploadId (ListParts)")
}

func writeXML(w http.ResponseWriter, status int, v any) error {
	b, err := xml.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(b)))
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	w.Write(b)
	return nil
}
