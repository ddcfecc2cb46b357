package cache

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Prefetch implements dsl.Cache: the newest archive under prefix is extracted into a
// directory of its own under Stage while the run is still checking out, so the restore
// costs a few renames once the checkout names the key. Without a Stage, or with nothing
// under prefix, there is nothing to prefetch: nil and no error. A listing or an archive
// that fails is logged and is nothing, as Restore's misses are.
func (c *Cache) Prefetch(ctx context.Context, prefix string) (dsl.Prefetched, error) {
	if c.Stage == "" {
		return nil, nil
	}
	if !validKey.MatchString(prefix) {
		return nil, &dsl.CacheError{Phase: "restore", Key: prefix, Cause: "a prefetch prefix is 1-200 of [A-Za-z0-9._-]"}
	}
	key, err := c.newest(ctx, prefix)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		c.log().Warn("cache listing failed; nothing prefetched", "prefix", prefix, "err", err)
		return nil, nil
	}
	if key == "" {
		return nil, nil
	}
	if err := os.MkdirAll(c.Stage, 0o755); err != nil {
		return nil, &dsl.CacheError{Phase: "restore", Key: key, Cause: err.Error()}
	}
	dir, err := os.MkdirTemp(c.Stage, "prefetch-")
	if err != nil {
		return nil, &dsl.CacheError{Phase: "restore", Key: key, Cause: err.Error()}
	}
	// The archive's entries 0/…, 1/… land in dir/0, dir/1: the paths they belong to are
	// known only when Adopt is called, in the order Save was given them.
	res, err := c.extract(ctx, key, func() error { return nil }, func(top string) string {
		if _, err := strconv.Atoi(top); err != nil { // not an entry Save writes
			return ""
		}
		return filepath.Join(dir, top)
	})
	st := &staged{key: key, dir: dir, res: res}
	if err != nil || !res.Hit {
		st.Drop()
		return nil, err
	}
	st.res.Prefetched = true
	return st, nil
}

// staged is one archive Prefetch extracted, waiting in dir.
type staged struct {
	key string
	dir string
	res dsl.CacheResult
}

func (s *staged) Key() string { return s.key }

// Adopt moves the staged entries onto paths, as Restore would have written them: a
// path that is not an image's layer is replaced by its staged tree (one rename), a
// layer gets the staged entries merged over it. Either way the staging directory is
// gone afterwards. A failure leaves the paths to Restore: it clears and writes them.
func (s *staged) Adopt(_ context.Context, paths []string) (dsl.CacheResult, error) {
	start := time.Now()
	defer s.Drop()
	// The files were extracted before the checkout wrote the sources: as a Restore's are
	// (archive.Extract), they must all be newer than those, or Cargo rebuilds everything.
	if err := touchFiles(s.dir, start); err != nil {
		return dsl.CacheResult{Key: s.key}, &dsl.CacheError{Phase: "restore", Key: s.key, Cause: err.Error()}
	}
	for i, p := range paths {
		src := filepath.Join(s.dir, strconv.Itoa(i))
		var err error
		if isLayer(p) {
			err = merge(src, p)
		} else if err = removeAll(p); err == nil {
			err = moveIfPresent(src, p)
		}
		if err != nil {
			return dsl.CacheResult{Key: s.key}, &dsl.CacheError{Phase: "restore", Key: s.key, Cause: err.Error()}
		}
	}
	res := s.res
	res.DurationMs += time.Since(start).Milliseconds()
	return res, nil
}

// Drop removes what was staged and not adopted, and the staging directory once it is
// empty: a run's commands find nothing of the prefetch in their HOME.
func (s *staged) Drop() {
	_ = removeAll(s.dir)
	_ = os.Remove(filepath.Dir(s.dir)) // fails while another prefetch still stages there
}

// touchFiles gives every regular file under dir the modification time t.
func touchFiles(dir string, t time.Time) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		return os.Chtimes(p, t, t)
	})
}

// moveIfPresent renames src to dst, making dst's parent; a src that does not exist (a
// path the save found empty) moves nothing.
func moveIfPresent(src, dst string) error {
	if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.Rename(src, dst)
}

// merge moves the tree src into the directory dst: an entry dst lacks moves whole (one
// rename), a directory both have is merged, anything else in dst is replaced. (A
// read-only directory in src stops it, as rename needs to write there: the caller then
// restores from the store. Only a Go build cache is an image's layer, and it has none.)
func merge(src, dst string) error {
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if st, err := os.Lstat(to); err == nil {
			if st.IsDir() && e.IsDir() {
				if err := merge(from, to); err != nil {
					return err
				}
				continue
			}
			if st.IsDir() != e.IsDir() { // rename replaces a file by a file, a directory by nothing else
				if err := removeAll(to); err != nil {
					return err
				}
			}
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
	}
	return nil
}
