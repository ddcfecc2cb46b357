// Package archive writes and safely extracts the tar streams the agent stores: caches
// (tar.zst, one top-level entry per cached path) and directory artifacts (tar.gz).
//
// Writing walks a directory without following symlinks: directories, regular files and
// symlinks become entries (other file types are skipped); modes keep their permission
// bits and mtimes are kept (Extract gives every file one new time instead: see there).
// Extraction goes through an os.Root, so no entry, however named, and no symlink in the
// archive can make it write outside the target directory; symlinks whose target leaves
// the directory are refused.
package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Stats counts what was archived or extracted.
type Stats struct {
	Files int   // regular files
	Bytes int64 // their contents
}

// WriteTree adds the tree at dir to tw with entry names prefix/<relative path>; the
// directory itself is the entry prefix/. A missing dir adds nothing and is not an error
// when missingOK. Regular files whose slash-separated path relative to dir skip
// reports are left out (skip may be nil).
func WriteTree(tw *tar.Writer, dir, prefix string, missingOK bool, skip func(rel string) bool) (Stats, error) {
	var st Stats
	root, err := os.Lstat(dir)
	if err != nil {
		if missingOK && errors.Is(err, fs.ErrNotExist) {
			return st, nil
		}
		return st, err
	}
	if !root.IsDir() {
		return st, fmt.Errorf("%s is not a directory", dir)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := prefix
		if rel != "." {
			name = path.Join(prefix, filepath.ToSlash(rel))
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, Mode: int64(info.Mode().Perm()), ModTime: info.ModTime().Truncate(time.Second), Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			return tw.WriteHeader(hdr)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			return tw.WriteHeader(hdr)
		case info.Mode().IsRegular():
			if skip != nil && skip(filepath.ToSlash(rel)) {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			n, err := io.Copy(tw, f)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if n != info.Size() {
				return fmt.Errorf("%s changed size while being archived", p)
			}
			st.Files++
			st.Bytes += n
		}
		return nil // sockets, devices, fifos: not cached
	})
	return st, err
}

// WriteFile adds one regular file entry with the given contents source.
func WriteFile(tw *tar.Writer, name string, r io.Reader, size int64, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: mode, ModTime: time.Now().Truncate(time.Second), Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s: wrote %d bytes of %d", name, n, size)
	}
	return err
}

// Extract reads a tar stream and writes each entry under the directory that target
// gives for its first path segment (the entry "2/a/b" goes to target("2")/a/b); entries
// whose first segment target rejects (returns "") are skipped. Target directories are
// created. Directory modes are applied at the end so read-only directories can be
// filled. Small files are written by a few workers while the stream is read on (a tree
// of many small files is bound by file-creation syscalls, not bytes).
//
// Every regular file gets one modification time, the extraction's start, rather than
// the archive's: a restored cache must be newer than the checkout it lands in (the
// archive's times are older than the sources, so every build tool would call the cache
// stale), and no restored file may be newer than another, which writing order alone
// would make them: Cargo rebuilds any unit whose dependency's output is newer than its
// own ("dependency … is newer than we are"), so a `target` whose lib landed after the
// integration test that links it recompiled the crate on every warm run.
func Extract(r io.Reader, target func(top string) string) (Stats, error) {
	x := &extractor{roots: map[string]*os.Root{}, made: map[string]bool{}, work: make(chan fileJob, 2*extractWorkers), mtime: time.Now()}
	for range extractWorkers {
		x.wg.Add(1)
		go x.worker()
	}
	st, err := x.run(r, target)
	close(x.work)
	x.wg.Wait()
	for _, rt := range x.roots {
		rt.Close()
	}
	if err == nil {
		err = x.firstErr()
	}
	x.mu.Lock()
	st.Files += x.files
	st.Bytes += x.bytes
	x.mu.Unlock()
	return st, err
}

const (
	extractWorkers = 4
	smallFile      = 1 << 20 // files up to this size go to the workers
)

type fileJob struct {
	root *os.Root
	rel  string
	mode fs.FileMode
	data []byte
}

type extractor struct {
	mtime time.Time // every extracted file's modification time
	roots map[string]*os.Root
	made  map[string]bool // directories known to exist, by root top + "/" + rel
	work  chan fileJob
	wg    sync.WaitGroup

	mu    sync.Mutex
	err   error
	files int
	bytes int64
}

func (x *extractor) fail(err error) {
	x.mu.Lock()
	if x.err == nil {
		x.err = err
	}
	x.mu.Unlock()
}

func (x *extractor) firstErr() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

func (x *extractor) worker() {
	defer x.wg.Done()
	for j := range x.work {
		if x.firstErr() != nil {
			continue
		}
		if err := writeFile(j.root, j.rel, j.mode, x.mtime, bytes.NewReader(j.data)); err != nil {
			x.fail(fmt.Errorf("%s: %w", j.rel, err))
			continue
		}
		x.mu.Lock()
		x.files++
		x.bytes += int64(len(j.data))
		x.mu.Unlock()
	}
}

// writeFile creates rel (replacing whatever is there) with mode, the contents of r and
// the modification time mtime.
func writeFile(rt *os.Root, rel string, mode fs.FileMode, mtime time.Time, r io.Reader) error {
	f, err := rt.OpenFile(rel, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode|0o200)
	if errors.Is(err, fs.ErrExist) { // a duplicate entry, or a symlink in its place
		_ = rt.Remove(rel)
		f, err = rt.OpenFile(rel, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode|0o200)
	}
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil && mode&0o200 == 0 {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rt.Chtimes(rel, mtime, mtime)
	}
	return err
}

func (x *extractor) run(r io.Reader, target func(top string) string) (Stats, error) {
	var st Stats
	tr := tar.NewReader(r)
	type dirMode struct {
		root *os.Root
		name string
		mode fs.FileMode
	}
	var dirs []dirMode
	for {
		if err := x.firstErr(); err != nil {
			return st, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		top, rel, _ := strings.Cut(name, "/")
		if top == "" {
			continue
		}
		rt := x.roots[top]
		if rt == nil {
			dir := target(top)
			if dir == "" {
				continue
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return st, err
			}
			if rt, err = os.OpenRoot(dir); err != nil {
				return st, err
			}
			x.roots[top] = rt
		}
		if rel == "" {
			rel = "."
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := x.mkdir(top, rt, rel); err != nil {
				return st, fmt.Errorf("%s: %w", hdr.Name, err)
			}
			if mode != 0 && mode != 0o755 {
				dirs = append(dirs, dirMode{rt, rel, mode})
			}
		case tar.TypeReg:
			if err := x.mkdir(top, rt, path.Dir(rel)); err != nil {
				return st, fmt.Errorf("%s: %w", hdr.Name, err)
			}
			if hdr.Size <= smallFile {
				data := make([]byte, hdr.Size)
				if _, err := io.ReadFull(tr, data); err != nil {
					return st, fmt.Errorf("%s: %w", hdr.Name, err)
				}
				x.work <- fileJob{rt, rel, mode, data}
				continue
			}
			if err := writeFile(rt, rel, mode, x.mtime, tr); err != nil {
				return st, fmt.Errorf("%s: %w", hdr.Name, err)
			}
			st.Files++
			st.Bytes += hdr.Size
		case tar.TypeSymlink:
			if !linkStaysInside(rel, hdr.Linkname) {
				return st, fmt.Errorf("%s: symlink to %q leaves the directory", hdr.Name, hdr.Linkname)
			}
			if err := x.mkdir(top, rt, path.Dir(rel)); err != nil {
				return st, fmt.Errorf("%s: %w", hdr.Name, err)
			}
			_ = rt.Remove(rel)
			if err := rt.Symlink(hdr.Linkname, rel); err != nil {
				return st, fmt.Errorf("%s: %w", hdr.Name, err)
			}
			// A later entry under this path must not find it in the made set as a directory.
			delete(x.made, top+"/"+rel)
		default:
			// hard links, devices, …: never written by this package; skipped.
		}
	}
	// Every file is written before read-only directories close.
	close(x.work)
	x.wg.Wait()
	x.work = make(chan fileJob)           // Extract closes it again
	for i := len(dirs) - 1; i >= 0; i-- { // deepest first
		d := dirs[i]
		_ = d.root.Chmod(d.name, d.mode)
	}
	return st, nil
}

// mkdir makes rel (and its parents) once.
func (x *extractor) mkdir(top string, rt *os.Root, rel string) error {
	if rel == "." || x.made[top+"/"+rel] {
		return nil
	}
	if err := rt.MkdirAll(rel, 0o755); err != nil {
		return err
	}
	for d := rel; d != "." && !x.made[top+"/"+d]; d = path.Dir(d) {
		x.made[top+"/"+d] = true
	}
	return nil
}

// linkStaysInside reports whether a symlink at rel pointing to target resolves, as
// text, inside the root.
func linkStaysInside(rel, target string) bool {
	if target == "" || path.IsAbs(target) {
		return false
	}
	resolved := path.Clean(path.Join(path.Dir(rel), target))
	return resolved != ".." && !strings.HasPrefix(resolved, "../")
}
