package s3store

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"

	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
)

// backend is a gofakes3.Backend (and MultipartBackend) for one bucket that keeps every
// object in its own file under <dir>/buckets/<bucket>/objects, named by the SHA-256 of
// the key. A key is never a file path, so keys like "a" and "a/b", "x/../y" or "dir/" are
// all distinct objects and none can reach outside the directory.
//
// An object file is the content followed by a JSON trailer (key, size, MD5, metadata,
// time), the trailer's length (uint32 big-endian) and the magic "FDS3OBJ1". Writes go to
// a temporary file and are renamed into place, so a reader sees the old object or the new
// one, never a half-written one, and a failed upload leaves nothing behind. A sorted
// in-memory index of keys, rebuilt from the trailers at start, serves listings.
type backend struct {
	bucket  string
	created time.Time
	objDir  string
	upDir   string
	tmpDir  string
	now     func() time.Time
	log     *slog.Logger

	mu   sync.RWMutex
	keys []string // sorted
	idx  map[string]entry

	completeMu sync.Mutex // serialises CompleteMultipartUpload and AbortMultipartUpload
}

type entry struct {
	size     int64
	md5      []byte
	modified time.Time
}

// trailer is the JSON record at the end of an object file.
type trailer struct {
	Key      string            `json:"key"`
	Size     int64             `json:"size"`
	MD5      string            `json:"md5"`
	Modified time.Time         `json:"modified"`
	Meta     map[string]string `json:"meta,omitempty"`
}

// uploadRecord is upload.json in a multipart upload's directory.
type uploadRecord struct {
	Key       string            `json:"key"`
	Meta      map[string]string `json:"meta,omitempty"`
	Initiated time.Time         `json:"initiated"`
}

const (
	magic        = "FDS3OBJ1"
	trailerFixed = 12 // uint32 length + magic
	formatFile   = "FORMAT"
	formatText   = "flare-dispatch s3store 1\n"
	// minPartSize and equal part sizes are R2's multipart rules, enforced here too so
	// that a client that works locally works against R2.
	minPartSize = 5 << 20
)

var _ gofakes3.Backend = (*backend)(nil)
var _ gofakes3.MultipartBackend = (*backend)(nil)

func openBackend(dir, bucket string, now func() time.Time, log *slog.Logger) (*backend, error) {
	if err := gofakes3.ValidateBucketName(bucket); err != nil {
		return nil, fmt.Errorf("bucket name %q: %w", bucket, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	format := filepath.Join(dir, formatFile)
	switch b, err := os.ReadFile(format); {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.WriteFile(format, []byte(formatText), 0o600); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case string(b) != formatText:
		return nil, fmt.Errorf("%s: unknown store format %q", dir, b)
	}
	base := filepath.Join(dir, "buckets", bucket)
	b := &backend{
		bucket: bucket,
		objDir: filepath.Join(base, "objects"),
		upDir:  filepath.Join(base, "uploads"),
		tmpDir: filepath.Join(dir, "tmp"),
		now:    now,
		log:    log,
		idx:    map[string]entry{},
	}
	// Leftovers of uploads interrupted by a crash.
	if err := os.RemoveAll(b.tmpDir); err != nil {
		return nil, err
	}
	for _, d := range []string{b.objDir, b.upDir, b.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if st, err := os.Stat(base); err == nil {
		b.created = st.ModTime()
	}
	if err := b.loadIndex(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *backend) loadIndex() error {
	err := filepath.WalkDir(b.objDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		t, err := readTrailer(f)
		if err != nil || filepath.Base(p) != keyHash(t.Key) {
			b.log.Warn("s3store: skipping unreadable object file", "path", p, "err", err)
			return nil
		}
		b.idx[t.Key] = t.entry()
		b.keys = append(b.keys, t.Key)
		return nil
	})
	slices.Sort(b.keys)
	return err
}

func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func (b *backend) objectPath(key string) string {
	h := keyHash(key)
	return filepath.Join(b.objDir, h[:2], h)
}

func (t trailer) entry() entry {
	sum, _ := hex.DecodeString(t.MD5)
	return entry{size: t.Size, md5: sum, modified: t.Modified}
}

func readTrailer(f *os.File) (trailer, error) {
	var t trailer
	st, err := f.Stat()
	if err != nil {
		return t, err
	}
	var fixed [trailerFixed]byte
	if st.Size() < trailerFixed {
		return t, errors.New("short object file")
	}
	if _, err := f.ReadAt(fixed[:], st.Size()-trailerFixed); err != nil {
		return t, err
	}
	if string(fixed[4:]) != magic {
		return t, errors.New("bad magic")
	}
	n := int64(binary.BigEndian.Uint32(fixed[:4]))
	if n > st.Size()-trailerFixed {
		return t, errors.New("bad trailer length")
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, st.Size()-trailerFixed-n); err != nil {
		return t, err
	}
	if err := json.Unmarshal(buf, &t); err != nil {
		return t, err
	}
	if t.Size != st.Size()-trailerFixed-n {
		return t, errors.New("size in trailer does not match file")
	}
	return t, nil
}

// open returns the object's file (positioned anywhere; use ReadAt) and trailer.
func (b *backend) open(key string) (*os.File, trailer, error) {
	f, err := os.Open(b.objectPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, trailer{}, gofakes3.KeyNotFound(key)
	} else if err != nil {
		return nil, trailer{}, err
	}
	t, err := readTrailer(f)
	if err == nil && t.Key != key {
		err = fmt.Errorf("object file for %q holds %q", key, t.Key)
	}
	if err != nil {
		f.Close()
		return nil, trailer{}, err
	}
	return f, t, nil
}

// keepMeta is the request metadata an object keeps: what S3 returns on GET/HEAD. Without
// a Content-Type the object gets application/octet-stream, so GET and HEAD agree (Go would
// otherwise sniff one for GET only).
func keepMeta(in map[string]string) map[string]string {
	out := map[string]string{"Content-Type": "application/octet-stream"}
	for k, v := range in {
		switch {
		case k == "Content-Type", k == "Content-Disposition", k == "Content-Encoding", k == "Last-Modified",
			strings.HasPrefix(k, "X-Amz-Meta-"):
			out[k] = v
		}
	}
	return out
}

// write streams r into a temporary file, checks its length, and commits it as key.
func (b *backend) write(key string, meta map[string]string, r io.Reader, size int64, cond *gofakes3.PutConditions) error {
	f, err := os.CreateTemp(b.tmpDir, "put-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op once renamed
	defer f.Close()
	// gofakes3 hands PutObject its own MD5-hashing reader (for the ETag it answers with);
	// reuse its sum instead of hashing the body twice.
	var sum hash.Hash = md5.New()
	w := io.Writer(io.MultiWriter(f, sum))
	if hr, ok := r.(summer); ok {
		sum, w = fixedSum{hr}, f
	}
	n, err := copyBody(w, r)
	if err != nil {
		return bodyError(err)
	}
	if size >= 0 && n != size {
		return gofakes3.ErrIncompleteBody
	}
	return b.commit(f, key, meta, n, sum, cond)
}

// summer is gofakes3's hashing reader: after EOF, Sum returns the MD5 of all it read.
type summer interface {
	io.Reader
	Sum([]byte) []byte
}

// fixedSum adapts a summer to the one hash.Hash method commit uses.
type fixedSum struct{ summer }

func (f fixedSum) Sum(b []byte) []byte       { return append(b, f.summer.Sum(nil)...) }
func (fixedSum) Write(p []byte) (int, error) { return len(p), nil }
func (fixedSum) Reset()                      {}
func (fixedSum) Size() int                   { return md5.Size }
func (fixedSum) BlockSize() int              { return md5.BlockSize }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// copyBody copies with a 256 KiB buffer: fewer, larger writes than io.Copy's 32 KiB.
func copyBody(w io.Writer, r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(onlyWriter{w}, onlyReaderOf{r}, *buf)
}

// onlyWriter and onlyReaderOf hide ReadFrom/WriteTo so CopyBuffer uses the buffer.
type onlyWriter struct{ io.Writer }
type onlyReaderOf struct{ io.Reader }

// commit appends the trailer to a complete temporary file and renames it into place.
func (b *backend) commit(f *os.File, key string, meta map[string]string, size int64, sum hash.Hash, cond *gofakes3.PutConditions) error {
	t := trailer{Key: key, Size: size, MD5: hex.EncodeToString(sum.Sum(nil)), Modified: b.now().UTC(), Meta: keepMeta(meta)}
	js, err := json.Marshal(t)
	if err != nil {
		return err
	}
	js = binary.BigEndian.AppendUint32(js, uint32(len(js)))
	js = append(js, magic...)
	if _, err := f.Write(js); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dst := b.objectPath(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if cond != nil {
		e, ok := b.idx[key]
		if err := gofakes3.CheckPutConditions(cond, &gofakes3.ConditionalObjectInfo{Exists: ok, Hash: e.md5}); err != nil {
			return err
		}
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	if _, ok := b.idx[key]; !ok {
		i, _ := slices.BinarySearch(b.keys, key)
		b.keys = slices.Insert(b.keys, i, key)
	}
	b.idx[key] = t.entry()
	return nil
}

// bodyError turns a failed body read into the S3 error gofakes3 should send. gofakes3
// matches error types without unwrapping, so its own errors pass through untouched.
func bodyError(err error) error {
	if errors.Is(err, blobcred.ErrPayloadMismatch) {
		return gofakes3.ErrorMessage(gofakes3.ErrBadDigest, blobcred.ErrPayloadMismatch.Message)
	}
	return err
}

func (b *backend) checkBucket(name string) error {
	if name != b.bucket {
		return gofakes3.BucketNotFound(name)
	}
	return nil
}

func (b *backend) ListBuckets() ([]gofakes3.BucketInfo, error) {
	return []gofakes3.BucketInfo{{Name: b.bucket, CreationDate: gofakes3.NewContentTime(b.created)}}, nil
}

// ListBucket lists in key order from after page.Marker, rolling keys that contain the
// delimiter after the prefix into common prefixes, at most page.MaxKeys entries (1000
// when unset); NextMarker is set whenever the listing is truncated.
func (b *backend) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	if err := b.checkBucket(name); err != nil {
		return nil, err
	}
	var pfx, delim string
	if prefix != nil {
		pfx, delim = prefix.Prefix, prefix.Delimiter
	}
	limit := int(page.MaxKeys)
	if limit <= 0 || limit > gofakes3.MaxBucketKeys {
		limit = gofakes3.MaxBucketKeys
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	i, _ := slices.BinarySearch(b.keys, pfx)
	if page.HasMarker && page.Marker != "" {
		j, found := slices.BinarySearch(b.keys, page.Marker)
		if found {
			j++
		}
		i = max(i, j)
	}
	out := gofakes3.NewObjectList()
	count, last, lastPrefix := 0, "", ""
	for ; i < len(b.keys); i++ {
		k := b.keys[i]
		if !strings.HasPrefix(k, pfx) {
			break
		}
		item, common := k, false
		if delim != "" {
			if j := strings.Index(k[len(pfx):], delim); j >= 0 {
				item, common = k[:len(pfx)+j+len(delim)], true
				if item == lastPrefix || page.HasMarker && item <= page.Marker {
					continue
				}
			}
		}
		if count == limit {
			out.IsTruncated, out.NextMarker = true, last
			break
		}
		if common {
			out.AddPrefix(item)
			lastPrefix = item
		} else {
			e := b.idx[k]
			out.Add(&gofakes3.Content{
				Key:          k,
				LastModified: gofakes3.NewContentTime(e.modified),
				ETag:         gofakes3.FormatETag(e.md5),
				Size:         e.size,
				StorageClass: "STANDARD",
			})
		}
		last = item
		count++
	}
	return out, nil
}

func (b *backend) CreateBucket(name string) error {
	if name == b.bucket {
		return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
	}
	return gofakes3.ErrNotImplemented
}

func (b *backend) BucketExists(name string) (bool, error) { return name == b.bucket, nil }

func (b *backend) DeleteBucket(string) error      { return gofakes3.ErrNotImplemented }
func (b *backend) ForceDeleteBucket(string) error { return gofakes3.ErrNotImplemented }

type sectionCloser struct {
	*io.SectionReader
	f *os.File
}

func (s sectionCloser) Close() error { return s.f.Close() }

func (b *backend) GetObject(bucket, key string, rangeRequest *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	if err := b.checkBucket(bucket); err != nil {
		return nil, err
	}
	f, t, err := b.open(key)
	if err != nil {
		return nil, err
	}
	rng, err := rangeRequest.Range(t.Size)
	if err != nil {
		f.Close()
		return nil, err
	}
	start, length := int64(0), t.Size
	if rng != nil {
		start, length = rng.Start, rng.Length
	}
	return &gofakes3.Object{
		Name:     key,
		Metadata: t.Meta,
		Size:     t.Size,
		Hash:     t.entry().md5,
		Range:    rng,
		Contents: sectionCloser{io.NewSectionReader(f, start, length), f},
	}, nil
}

func (b *backend) HeadObject(bucket, key string) (*gofakes3.Object, error) {
	if err := b.checkBucket(bucket); err != nil {
		return nil, err
	}
	f, t, err := b.open(key)
	if err != nil {
		return nil, err
	}
	f.Close()
	return &gofakes3.Object{Name: key, Metadata: t.Meta, Size: t.Size, Hash: t.entry().md5, Contents: http.NoBody}, nil
}

func (b *backend) DeleteObject(bucket, key string) (gofakes3.ObjectDeleteResult, error) {
	if err := b.checkBucket(bucket); err != nil {
		return gofakes3.ObjectDeleteResult{}, err
	}
	return gofakes3.ObjectDeleteResult{}, b.delete(key)
}

func (b *backend) delete(key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := os.Remove(b.objectPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, ok := b.idx[key]; ok {
		delete(b.idx, key)
		if i, found := slices.BinarySearch(b.keys, key); found {
			b.keys = slices.Delete(b.keys, i, i+1)
		}
	}
	return nil
}

func (b *backend) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	if err := b.checkBucket(bucket); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	return gofakes3.PutObjectResult{}, b.write(key, meta, input, size, cond)
}

func (b *backend) DeleteMulti(bucket string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	if err := b.checkBucket(bucket); err != nil {
		return res, err
	}
	for _, k := range keys {
		if err := b.delete(k); err != nil {
			res.Error = append(res.Error, gofakes3.ErrorResult{Code: gofakes3.ErrInternal, Message: err.Error(), Key: k})
			continue
		}
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: k})
	}
	return res, nil
}

func (b *backend) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	return gofakes3.CopyObject(b, srcBucket, srcKey, dstBucket, dstKey, meta)
}

// Multipart uploads live in uploads/<id>/: upload.json and one file per part, named by
// its number. They survive a restart like objects do.

func (b *backend) uploadDir(id gofakes3.UploadID) (string, error) {
	s := string(id)
	if len(s) != 32 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", gofakes3.ErrNoSuchUpload
	}
	return filepath.Join(b.upDir, s), nil
}

func (b *backend) loadUpload(bucket, key string, id gofakes3.UploadID) (string, uploadRecord, error) {
	var rec uploadRecord
	if err := b.checkBucket(bucket); err != nil {
		return "", rec, err
	}
	dir, err := b.uploadDir(id)
	if err != nil {
		return "", rec, err
	}
	js, err := os.ReadFile(filepath.Join(dir, "upload.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", rec, gofakes3.ErrNoSuchUpload
	} else if err != nil {
		return "", rec, err
	}
	if err := json.Unmarshal(js, &rec); err != nil {
		return "", rec, err
	}
	if rec.Key != key {
		return "", rec, gofakes3.ErrNoSuchUpload
	}
	return dir, rec, nil
}

func (b *backend) CreateMultipartUpload(bucket, key string, meta map[string]string) (gofakes3.UploadID, error) {
	if err := b.checkBucket(bucket); err != nil {
		return "", err
	}
	var raw [16]byte
	rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	dir := filepath.Join(b.upDir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	js, err := json.Marshal(uploadRecord{Key: key, Meta: keepMeta(meta), Initiated: b.now().UTC()})
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(b.tmpDir, filepath.Join(dir, "upload.json"), js); err != nil {
		return "", err
	}
	return gofakes3.UploadID(id), nil
}

func writeFileAtomic(tmpDir, dst string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, "meta-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

func (b *backend) UploadPart(bucket, key string, id gofakes3.UploadID, partNumber int, contentLength int64, input io.Reader) (string, error) {
	if partNumber < 1 || partNumber > gofakes3.MaxUploadPartNumber {
		return "", gofakes3.ErrInvalidPart
	}
	dir, _, err := b.loadUpload(bucket, key, id)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(b.tmpDir, "part-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sum := md5.New()
	n, err := copyBody(io.MultiWriter(f, sum), input)
	if err != nil {
		return "", bodyError(err)
	}
	if contentLength >= 0 && n != contentLength {
		return "", gofakes3.ErrIncompleteBody
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, strconv.Itoa(partNumber))); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", gofakes3.ErrNoSuchUpload // completed or aborted meanwhile
		}
		return "", err
	}
	return gofakes3.FormatETag(sum.Sum(nil)), nil
}

type partFile struct {
	number int
	size   int64
}

func (b *backend) parts(dir string) ([]partFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []partFile
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, partFile{n, info.Size()})
	}
	slices.SortFunc(out, func(a, b partFile) int { return a.number - b.number })
	return out, nil
}

func fileMD5(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func (b *backend) ListParts(bucket, key string, id gofakes3.UploadID, marker int, limit int64) (*gofakes3.ListMultipartUploadPartsResult, error) {
	dir, _, err := b.loadUpload(bucket, key, id)
	if err != nil {
		return nil, err
	}
	parts, err := b.parts(dir)
	if err != nil {
		return nil, err
	}
	res := &gofakes3.ListMultipartUploadPartsResult{Bucket: bucket, Key: key, UploadID: id, PartNumberMarker: marker, MaxParts: limit, StorageClass: "STANDARD"}
	for _, p := range parts {
		if p.number <= marker {
			continue
		}
		if int64(len(res.Parts)) == limit {
			res.IsTruncated, res.NextPartNumberMarker = true, res.Parts[len(res.Parts)-1].PartNumber
			break
		}
		sum, err := fileMD5(filepath.Join(dir, strconv.Itoa(p.number)))
		if err != nil {
			return nil, err
		}
		res.Parts = append(res.Parts, gofakes3.ListMultipartUploadPartItem{PartNumber: p.number, ETag: gofakes3.FormatETag(sum), Size: p.size})
	}
	return res, nil
}

func (b *backend) ListMultipartUploads(bucket string, marker *gofakes3.UploadListMarker, prefix gofakes3.Prefix, limit int64) (*gofakes3.ListMultipartUploadsResult, error) {
	if err := b.checkBucket(bucket); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(b.upDir)
	if err != nil {
		return nil, err
	}
	type up struct {
		key string
		id  gofakes3.UploadID
		at  time.Time
	}
	var ups []up
	for _, e := range ents {
		js, err := os.ReadFile(filepath.Join(b.upDir, e.Name(), "upload.json"))
		if err != nil {
			continue
		}
		var rec uploadRecord
		if json.Unmarshal(js, &rec) != nil || !strings.HasPrefix(rec.Key, prefix.Prefix) {
			continue
		}
		ups = append(ups, up{rec.Key, gofakes3.UploadID(e.Name()), rec.Initiated})
	}
	slices.SortFunc(ups, func(a, b up) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(string(a.id), string(b.id))
	})
	res := &gofakes3.ListMultipartUploadsResult{Bucket: bucket, Prefix: prefix.Prefix, MaxUploads: limit}
	for _, u := range ups {
		if marker != nil && (u.key < marker.Object || u.key == marker.Object && u.id <= marker.UploadID) {
			continue
		}
		if int64(len(res.Uploads)) == limit {
			last := res.Uploads[len(res.Uploads)-1]
			res.IsTruncated, res.NextKeyMarker, res.NextUploadIDMarker = true, last.Key, last.UploadID
			break
		}
		res.Uploads = append(res.Uploads, gofakes3.ListMultipartUploadItem{Key: u.key, UploadID: u.id, StorageClass: "STANDARD", Initiated: gofakes3.NewContentTime(u.at)})
	}
	return res, nil
}

func (b *backend) AbortMultipartUpload(bucket, key string, id gofakes3.UploadID) error {
	b.completeMu.Lock()
	defer b.completeMu.Unlock()
	dir, _, err := b.loadUpload(bucket, key, id)
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// CompleteMultipartUpload concatenates the listed parts into the object. The parts must
// be in ascending order with matching ETags; every part but the last must be at least
// 5 MiB and all of them the same size (R2's rule). The object's ETag is the MD5 of its
// content, as for a single PUT (S3 and R2 would answer "<md5 of md5s>-<parts>").
func (b *backend) CompleteMultipartUpload(bucket, key string, id gofakes3.UploadID, in *gofakes3.CompleteMultipartUploadRequest) (gofakes3.VersionID, string, error) {
	b.completeMu.Lock()
	defer b.completeMu.Unlock()
	dir, rec, err := b.loadUpload(bucket, key, id)
	if err != nil {
		return "", "", err
	}
	if len(in.Parts) == 0 {
		return "", "", gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "no parts")
	}
	stored, err := b.parts(dir)
	if err != nil {
		return "", "", err
	}
	sizes := map[int]int64{}
	for _, p := range stored {
		sizes[p.number] = p.size
	}
	for i, p := range in.Parts {
		if i > 0 && p.PartNumber <= in.Parts[i-1].PartNumber {
			return "", "", gofakes3.ErrInvalidPartOrder
		}
		size, ok := sizes[p.PartNumber]
		if !ok {
			return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d was not uploaded", p.PartNumber)
		}
		if i < len(in.Parts)-1 {
			if size < minPartSize {
				return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d is %d bytes; all but the last must be at least 5 MiB", p.PartNumber, size)
			}
			if first := sizes[in.Parts[0].PartNumber]; size != first {
				return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d is %d bytes, part %d is %d; all but the last must be the same size", p.PartNumber, size, in.Parts[0].PartNumber, first)
			}
		}
	}
	f, err := os.CreateTemp(b.tmpDir, "complete-")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	whole := md5.New()
	var total int64
	for _, p := range in.Parts {
		part := md5.New()
		pf, err := os.Open(filepath.Join(dir, strconv.Itoa(p.PartNumber)))
		if err != nil {
			return "", "", err
		}
		n, err := io.Copy(io.MultiWriter(f, whole, part), pf)
		pf.Close()
		if err != nil {
			return "", "", err
		}
		total += n
		if strings.Trim(p.ETag, `"`) != hex.EncodeToString(part.Sum(nil)) {
			return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d: ETag %s does not match", p.PartNumber, p.ETag)
		}
	}
	if err := b.commit(f, key, rec.Meta, total, whole, nil); err != nil {
		return "", "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		b.log.Warn("s3store: removing completed upload", "dir", dir, "err", err)
	}
	return "", gofakes3.FormatETag(whole.Sum(nil)), nil
}
