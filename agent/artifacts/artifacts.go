// Package artifacts is the agent's dsl.Artifacts: files and directories of a run
// stored under artifacts/<exec>/ in the blob store and served by the edge at
// /v1/artifacts/<exec>/<name>[/path] (contract §3, §6.3).
//
// A file is stored as it is at artifacts/<exec>/<name>. A directory is stored twice:
// as a tar.gz at artifacts/<exec>/<name> (entries under <name>/) for download, and file
// by file under artifacts/<exec>/<name>/<path> for browsing — the "upload-time
// expansion" the edge serves and that writeback reads.
package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/flare-dispatch/flare-dispatch/agent/archive"
	"github.com/flare-dispatch/flare-dispatch/agent/blobstore"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Store is the blob store operations artifacts need.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
	List(ctx context.Context, prefix string) ([]blobstore.Object, error)
}

// Artifacts implements dsl.Artifacts for one execution.
type Artifacts struct {
	Store  Store
	Exec   string
	Origin string // the edge, for links
	Log    *slog.Logger
}

var _ dsl.Artifacts = (*Artifacts)(nil)

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// expandWorkers uploads a directory's files in parallel.
const expandWorkers = 8

func (a *Artifacts) prefix() string { return "artifacts/" + a.Exec + "/" }

// URL is the edge's link to an artifact.
func (a *Artifacts) URL(name string) string {
	return strings.TrimRight(a.Origin, "/") + "/v1/artifacts/" + a.Exec + "/" + name
}

func (a *Artifacts) fail(name string, err error) error {
	return &dsl.ArtifactUploadFailed{Name: name, Cause: err.Error()}
}

func checkName(name string) error {
	if !validName.MatchString(name) || name == "." || name == ".." {
		return &dsl.ArtifactUploadFailed{Name: name, Cause: "an artifact name is 1-128 of [A-Za-z0-9._-]"}
	}
	return nil
}

// ContentType guesses by extension.
func ContentType(p string) string {
	switch ext := strings.ToLower(path.Ext(p)); ext {
	case ".ndjson":
		return "application/x-ndjson"
	case ".log", ".txt", ".md":
		return "text/plain; charset=utf-8"
	case "":
		return "application/octet-stream"
	default:
		if t := mime.TypeByExtension(ext); t != "" {
			return t
		}
	}
	return "application/octet-stream"
}

// Upload implements dsl.Artifacts.
func (a *Artifacts) Upload(ctx context.Context, name, p, contentType string) (dsl.Artifact, error) {
	if err := checkName(name); err != nil {
		return dsl.Artifact{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return dsl.Artifact{}, a.fail(name, err)
	}
	if st.IsDir() {
		var entries []dsl.TreeEntry
		err := filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, _ := filepath.Rel(p, fp)
			info, err := d.Info()
			if err != nil {
				return err
			}
			entries = append(entries, dsl.TreeEntry{Path: filepath.ToSlash(rel), Source: fp, Executable: info.Mode().Perm()&0o111 != 0})
			return nil
		})
		if err != nil {
			return dsl.Artifact{}, a.fail(name, err)
		}
		return a.UploadTree(ctx, name, entries)
	}
	f, err := os.Open(p)
	if err != nil {
		return dsl.Artifact{}, a.fail(name, err)
	}
	defer f.Close()
	if contentType == "" {
		contentType = ContentType(p)
	}
	n, err := a.Store.Put(ctx, a.prefix()+name, f, contentType)
	if err != nil {
		return dsl.Artifact{}, a.fail(name, err)
	}
	return dsl.Artifact{Name: name, URL: a.URL(name), Size: n, ContentType: contentType}, nil
}

// UploadTree implements dsl.Artifacts.
func (a *Artifacts) UploadTree(ctx context.Context, name string, entries []dsl.TreeEntry) (dsl.Artifact, error) {
	if err := checkName(name); err != nil {
		return dsl.Artifact{}, err
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if !validPath(e.Path) {
			return dsl.Artifact{}, a.fail(name, fmt.Errorf("entry path %q must be relative, without empty, . or .. segments", e.Path))
		}
		if seen[e.Path] {
			return dsl.Artifact{}, a.fail(name, fmt.Errorf("entry path %q given twice", e.Path))
		}
		seen[e.Path] = true
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })

	// The tarball, streamed.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTarGz(pw, name, entries)) }()
	size, err := a.Store.Put(ctx, a.prefix()+name, pr, "application/gzip")
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return dsl.Artifact{}, a.fail(name, err)
	}

	// The expansion, file by file.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan dsl.TreeEntry)
	var wg sync.WaitGroup
	for range expandWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				if err := a.putEntry(ctx, name, e); err != nil {
					cancel(err)
				}
			}
		}()
	}
	for _, e := range entries {
		select {
		case work <- e:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return dsl.Artifact{}, a.fail(name, err)
	}
	return dsl.Artifact{Name: name, URL: a.URL(name) + "/", Size: size, Dir: true, Files: len(entries), ContentType: "application/gzip"}, nil
}

func (a *Artifacts) putEntry(ctx context.Context, name string, e dsl.TreeEntry) error {
	var r io.Reader = bytes.NewReader(e.Data)
	if e.Source != "" {
		f, err := os.Open(e.Source)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	_, err := a.Store.Put(ctx, a.prefix()+name+"/"+e.Path, r, ContentType(e.Path))
	return err
}

func writeTarGz(w io.Writer, name string, entries []dsl.TreeEntry) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		mode := int64(0o644)
		if e.Executable {
			mode = 0o755
		}
		full := name + "/" + e.Path
		if e.Source == "" {
			if err := archive.WriteFile(tw, full, bytes.NewReader(e.Data), int64(len(e.Data)), mode); err != nil {
				return err
			}
			continue
		}
		f, err := os.Open(e.Source)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil {
			err = archive.WriteFile(tw, full, f, st.Size(), mode)
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func validPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// List implements dsl.Artifacts: the top-level artifacts.
func (a *Artifacts) List(ctx context.Context) ([]dsl.Artifact, error) {
	objs, err := a.Store.List(ctx, a.prefix())
	if err != nil {
		return nil, err
	}
	byName := map[string]*dsl.Artifact{}
	var names []string
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, a.prefix())
		top, _, nested := strings.Cut(rel, "/")
		art := byName[top]
		if art == nil {
			art = &dsl.Artifact{Name: top, URL: a.URL(top)}
			byName[top] = art
			names = append(names, top)
		}
		if nested {
			art.Dir = true
			art.Files++
		} else {
			art.Size = o.Size
		}
	}
	sort.Strings(names)
	out := make([]dsl.Artifact, 0, len(names))
	for _, n := range names {
		art := *byName[n]
		if art.Dir {
			art.URL += "/"
		}
		out = append(out, art)
	}
	return out, nil
}
