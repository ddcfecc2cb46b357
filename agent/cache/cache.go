// Package cache is the agent's dsl.Cache: directory trees archived as tar.zst and
// streamed to and from the blob store under cache/<repo>/<key>.tar.zst. Saving
// compresses while it uploads (a pipe from the tar writer through zstd into a
// multipart upload); restoring decompresses while it downloads. Neither holds an
// archive on disk or in memory.
package cache

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/flare-dispatch/flare-dispatch/agent/archive"
	"github.com/flare-dispatch/flare-dispatch/agent/blobstore"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Store is the blob store operations the cache needs.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
	Get(ctx context.Context, key string) (io.ReadCloser, int64, error)
	List(ctx context.Context, prefix string) ([]blobstore.Object, error)
	Delete(ctx context.Context, key string) error
}

// DefaultKeep is how many archives of one tool (dsl.CacheFamily: all its versions and
// lockfiles) a repository's cache keeps: the newest, by the store's LastModified.
const DefaultKeep = 3

// Cache implements dsl.Cache for one repository.
type Cache struct {
	Store    Store
	Prefix   string // cache/<repo>/
	Writable bool   // the execution's credential may write the prefix
	// Keep bounds the archives per tool: after a save, older ones of the same
	// dsl.CacheFamily beyond the newest Keep are deleted (0: DefaultKeep).
	Keep  int
	Level zstd.EncoderLevel
	// Stage is a directory of the sandbox, on the paths' filesystem, where Prefetch
	// extracts archives ahead of need ("": no prefetching).
	Stage string
	Log   *slog.Logger
}

var _ dsl.Cache = (*Cache)(nil)

var validKey = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

var errUploadEnded = errors.New("cache upload ended")

// Ext is the archive suffix of every cache key.
const Ext = ".tar.zst"

func (c *Cache) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Cache) blobKey(key string) (string, error) {
	if !validKey.MatchString(key) {
		return "", &dsl.CacheError{Phase: "restore", Key: key, Cause: "a cache key is 1-200 of [A-Za-z0-9._-]"}
	}
	return c.Prefix + key + Ext, nil
}

// Restore implements dsl.Cache. A corrupt or unreadable archive is a miss (the paths are
// cleared and the caller builds and saves again), not an error.
func (c *Cache) Restore(ctx context.Context, key string, paths []string) (dsl.CacheResult, error) {
	res := dsl.CacheResult{Key: key}
	if _, err := c.blobKey(key); err != nil {
		return res, err
	}
	// An image's layer (a Go image's pre-built standard library) is merged over, never
	// removed: in a Container removing it would hide the image's files for good.
	clear := func() error {
		for _, p := range paths {
			if !isLayer(p) {
				if err := removeAll(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return c.extract(ctx, key, clear, func(top string) string {
		i, err := strconv.Atoi(top)
		if err != nil || i < 0 || i >= len(paths) {
			return ""
		}
		return paths[i]
	})
}

// extract streams the archive under key (a valid key) through zstd into the
// directories target names for its top-level entries, once clear has made room. No
// archive, or one that cannot be read, is a miss: the store's or the archive's error is
// logged, clear runs again when extraction failed halfway, and only a cancelled ctx or a
// failed clear is an error.
func (c *Cache) extract(ctx context.Context, key string, clear func() error, target func(top string) string) (dsl.CacheResult, error) {
	res := dsl.CacheResult{Key: key}
	start := time.Now()
	body, size, err := c.Store.Get(ctx, c.Prefix+key+Ext)
	if errors.Is(err, blobstore.ErrNotFound) {
		return res, nil
	} else if err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		c.log().Warn("cache unreadable; treating as a miss", "key", key, "err", err)
		return res, nil
	}
	defer body.Close()
	if err := clear(); err != nil {
		return res, &dsl.CacheError{Phase: "restore", Key: key, Cause: err.Error()}
	}
	counted := &countReader{r: body}
	// One decoder goroutine: it starts faster in a fresh process (a sandbox's agent is
	// one) than a pool of them, and extraction writes files from its own workers.
	dec, err := zstd.NewReader(counted, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return res, &dsl.CacheError{Phase: "restore", Key: key, Cause: err.Error()}
	}
	defer dec.Close()
	st, err := archive.Extract(dec, target)
	if err != nil {
		// A layer keeps what was merged: the Go build cache checks each entry's size
		// against its index entry, so a file cut short is a miss there, not an error.
		_ = clear()
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		c.log().Warn("cache archive unusable; treating as a miss", "key", key, "err", err)
		return dsl.CacheResult{Key: key}, nil
	}
	res.Hit, res.Files, res.RawBytes, res.Bytes = true, st.Files, st.Bytes, counted.n.Load()
	if size > 0 {
		res.Bytes = size
	}
	res.DurationMs = time.Since(start).Milliseconds()
	return res, nil
}

// RestoreFallback implements dsl.Cache: key, else the newest archive under the first
// prefix that has one. A listing that fails is a miss, as an unreadable archive is.
func (c *Cache) RestoreFallback(ctx context.Context, key string, prefixes, paths []string) (dsl.CacheResult, error) {
	res, err := c.Restore(ctx, key, paths)
	if err != nil || res.Hit {
		return res, err
	}
	for _, p := range prefixes {
		if !validKey.MatchString(p) {
			return res, &dsl.CacheError{Phase: "restore", Key: p, Cause: "a fallback prefix is 1-200 of [A-Za-z0-9._-]"}
		}
		from, err := c.newest(ctx, p)
		if err != nil {
			if ctx.Err() != nil {
				return res, err
			}
			c.log().Warn("cache listing failed; treating as a miss", "prefix", p, "err", err)
			continue
		}
		if from == "" {
			continue
		}
		fb, err := c.Restore(ctx, from, paths)
		if err != nil || !fb.Hit {
			return res, err
		}
		fb.Key, fb.FromKey = key, from
		return fb, nil
	}
	return res, nil
}

// newest is the key of the newest archive whose key starts with prefix ("": none).
func (c *Cache) newest(ctx context.Context, prefix string) (string, error) {
	objs, err := c.Store.List(ctx, c.Prefix+prefix)
	if err != nil {
		return "", err
	}
	var newest blobstore.Object
	for _, o := range objs {
		if strings.HasSuffix(o.Key, Ext) && (newest.Key == "" || o.Modified.After(newest.Modified)) {
			newest = o
		}
	}
	if newest.Key == "" {
		return "", nil
	}
	return strings.TrimSuffix(strings.TrimPrefix(newest.Key, c.Prefix), Ext), nil
}

// Save implements dsl.Cache. Paths that do not exist are left out.
func (c *Cache) Save(ctx context.Context, key string, paths []string) (dsl.CacheResult, error) {
	res := dsl.CacheResult{Key: key}
	bk, err := c.blobKey(key)
	if err != nil {
		return res, err
	}
	if !c.Writable {
		res.ReadOnly = true
		return res, nil
	}
	start := time.Now()
	pr, pw := io.Pipe()
	var st archive.Stats
	wrote := make(chan error, 1)
	go func() {
		var err error
		st, err = c.write(pw, paths)
		pw.CloseWithError(err)
		wrote <- err
	}()
	n, perr := c.Store.Put(ctx, bk, pr, "application/zstd")
	pr.CloseWithError(errUploadEnded) // unblock the writer if the upload failed
	werr := <-wrote
	switch {
	case errors.Is(perr, blobstore.ErrForbidden):
		res.ReadOnly = true
		return res, nil
	case werr != nil && !errors.Is(werr, errUploadEnded):
		return res, &dsl.CacheError{Phase: "save", Key: key, Cause: werr.Error()}
	case perr != nil:
		return res, &dsl.CacheError{Phase: "save", Key: key, Cause: perr.Error()}
	}
	res.Bytes, res.Files, res.RawBytes = n, st.Files, st.Bytes
	res.DurationMs = time.Since(start).Milliseconds()
	c.evict(ctx, key)
	return res, nil
}

// evict deletes the archives of key's family beyond the newest Keep, key itself never
// (it was just written, whatever the store's clock says). Only a writable credential
// saves, so only the default branch's runs evict. A failure is logged: the next save
// tries again. A run restoring an archive as it is deleted sees an unusable archive: a
// miss, as any.
func (c *Cache) evict(ctx context.Context, key string) {
	fam := dsl.CacheFamily(key)
	if fam == "" {
		return
	}
	keep := c.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	objs, err := c.Store.List(ctx, c.Prefix+fam)
	if err != nil {
		c.log().Warn("cache eviction: listing failed", "family", fam, "err", err)
		return
	}
	self := c.Prefix + key + Ext
	var others []blobstore.Object
	for _, o := range objs {
		if strings.HasSuffix(o.Key, Ext) && o.Key != self && dsl.CacheFamily(strings.TrimPrefix(o.Key, c.Prefix)) == fam {
			others = append(others, o)
		}
	}
	slices.SortFunc(others, func(a, b blobstore.Object) int { return b.Modified.Compare(a.Modified) })
	for _, o := range others[min(len(others), keep-1):] {
		if err := c.Store.Delete(ctx, o.Key); err != nil {
			c.log().Warn("cache eviction: delete failed", "key", o.Key, "err", err)
			continue
		}
		c.log().Info("cache archive evicted", "key", strings.TrimSuffix(strings.TrimPrefix(o.Key, c.Prefix), Ext), "keep", keep)
	}
}

// write archives paths as entries 0/…, 1/…, … into a zstd stream.
func (c *Cache) write(w io.Writer, paths []string) (archive.Stats, error) {
	var total archive.Stats
	level := c.Level
	if level == 0 {
		level = zstd.SpeedDefault
	}
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return total, err
	}
	tw := tar.NewWriter(enc)
	for i, p := range paths {
		skip, err := layerEntries(p)
		if err != nil {
			enc.Close()
			return total, fmt.Errorf("archive %s: %w", p, err)
		}
		st, err := archive.WriteTree(tw, p, strconv.Itoa(i), true, skip)
		if err != nil {
			enc.Close()
			return total, fmt.Errorf("archive %s: %w", p, err)
		}
		total.Files += st.Files
		total.Bytes += st.Bytes
	}
	if err := tw.Close(); err != nil {
		enc.Close()
		return total, err
	}
	return total, enc.Close()
}

// isLayer says whether dir is an image's layer (dsl.ImageLayerManifest).
func isLayer(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, dsl.ImageLayerManifest))
	return err == nil
}

// layerEntries is the skip of a save of dir: for an image's layer, its manifest and
// the entries it lists (the image has them; the archive holds only what runs added);
// otherwise nil.
func layerEntries(dir string) (func(string) bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, dsl.ImageLayerManifest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	names := map[string]bool{dsl.ImageLayerManifest: true}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names[l] = true
		}
	}
	return func(rel string) bool { return names[rel] }, nil
}

// removeAll removes a tree even where it holds read-only directories (Go's module
// cache without -modcacherw).
func removeAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return err
	}
	_ = makeWritable(p)
	return os.RemoveAll(p)
}

func makeWritable(root string) error {
	return walkDirs(root, func(dir string) { _ = os.Chmod(dir, 0o755) })
}

func walkDirs(root string, fn func(string)) error {
	st, err := os.Lstat(root)
	if err != nil || !st.IsDir() {
		return err
	}
	fn(root)
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = walkDirs(root+"/"+e.Name(), fn)
		}
	}
	return nil
}

// countReader counts what the decoder read; the decoder reads from its own goroutine.
type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
