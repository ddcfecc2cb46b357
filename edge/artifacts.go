package edge

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// GET /v1/artifacts/:execution/:name[/path][/] (contract §3): no token — the execution
// id is the capability, so GitHub's image proxy can fetch a GIF for a PR comment.
//
//   - the bare name streams artifacts/<exec>/<name>: a file as uploaded, or a
//     directory's tar.gz;
//   - /<path> streams artifacts/<exec>/<name>/<path> from the upload-time expansion of a
//     directory;
//   - a trailing "/" serves the directory's index.html, else an HTML listing (at most
//     1000 entries) with a link to the tar.gz.
//
// Artifacts are immutable once uploaded (cache-control immutable, etag). Everything is
// served with a sandboxing CSP: an uploaded HTML report runs in an opaque origin, never
// as the edge's.

var artifactChars = pattern.NewSet("A-Za-z0-9._-")

// ValidArtifactName reports whether name may name an artifact.
func ValidArtifactName(name string) bool {
	return artifactChars.Run(name, 1, 128) && name != "." && name != ".."
}

const maxListing = 1000

func (s *Server) artifact(w http.ResponseWriter, r *http.Request) {
	exec, name, rest := r.PathValue("exec"), r.PathValue("name"), r.PathValue("path")
	if !ValidExecutionID(exec) {
		writeError(w, http.StatusBadRequest, "invalid_execution_id", "execution id must match ^[A-Za-z0-9:_-]{3,128}$")
		return
	}
	notFound := func() {
		writeError(w, http.StatusNotFound, "artifact_not_found", fmt.Sprintf("no artifact %q for execution %q", name+suffix(rest, r), exec))
	}
	if !ValidArtifactName(name) {
		notFound()
		return
	}
	base := "artifacts/" + exec + "/" + name
	switch {
	case !strings.HasSuffix(r.URL.Path, "/") && rest == "":
		s.serveBlob(w, r, base, notFound)
	case rest == "" || strings.HasSuffix(rest, "/"):
		if rest != "" && !validArtifactPath(strings.TrimSuffix(rest, "/")) {
			notFound()
			return
		}
		s.serveDir(w, r, exec, name, base+"/"+rest)
	default:
		if !validArtifactPath(rest) {
			notFound()
			return
		}
		s.serveBlob(w, r, base+"/"+rest, notFound)
	}
}

func suffix(rest string, r *http.Request) string {
	if rest != "" {
		return "/" + rest
	}
	if strings.HasSuffix(r.URL.Path, "/") {
		return "/"
	}
	return ""
}

// validArtifactPath: slash-separated segments, none empty, "." or "..".
func validArtifactPath(p string) bool {
	if p == "" || len(p) > 1024 {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.ContainsAny(p, "\\\x00")
}

func artifactHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "sandbox allow-scripts allow-popups")
	w.Header().Set("Referrer-Policy", "no-referrer")
}

func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, key string, notFound func()) {
	body, meta, err := s.Blobs.Get(r.Context(), key)
	if errors.Is(err, ErrBlobNotFound) {
		notFound()
		return
	} else if err != nil {
		writeError(w, http.StatusBadGateway, "blob_error", err.Error())
		return
	}
	defer body.Close()
	artifactHeaders(w)
	ct := meta.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	if meta.ETag != "" {
		w.Header().Set("ETag", meta.ETag)
		if r.Header.Get("If-None-Match") == meta.ETag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	if meta.Size > 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(meta.Size, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, body)
}

// serveDir serves a directory of an expanded artifact: its index.html, else a listing.
func (s *Server) serveDir(w http.ResponseWriter, r *http.Request, exec, name, prefix string) {
	idx := prefix + "index.html"
	if _, err := s.Blobs.Head(r.Context(), idx); err == nil {
		s.serveBlob(w, r, idx, func() {})
		return
	}
	infos, err := s.Blobs.List(r.Context(), prefix)
	if err != nil {
		writeError(w, http.StatusBadGateway, "blob_error", err.Error())
		return
	}
	if len(infos) == 0 {
		bare := "artifacts/" + exec + "/" + name
		if _, err := s.Blobs.Head(r.Context(), bare); err == nil && prefix == bare+"/" {
			writeError(w, http.StatusNotFound, "artifact_not_browsable", fmt.Sprintf("artifact %q is a file, not a directory", name))
			return
		}
		writeError(w, http.StatusNotFound, "artifact_not_found", fmt.Sprintf("no artifact directory %q for execution %q", strings.TrimPrefix(prefix, "artifacts/"+exec+"/"), exec))
		return
	}
	type entry struct {
		name string
		size int64
		dir  bool
	}
	seen := map[string]*entry{}
	var list []*entry
	for _, in := range infos {
		rel := strings.TrimPrefix(in.Key, prefix)
		first, _, isDir := strings.Cut(rel, "/")
		e := seen[first]
		if e == nil {
			if len(list) >= maxListing {
				break
			}
			e = &entry{name: first, dir: isDir}
			seen[first] = e
			list = append(list, e)
		}
		e.size += in.Size
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].dir != list[j].dir {
			return list[i].dir
		}
		return list[i].name < list[j].name
	})
	title := strings.TrimPrefix(prefix, "artifacts/")
	var b strings.Builder
	fmt.Fprintf(&b, "<!doctype html><meta charset=utf-8><title>%s</title><h1>%s</h1><ul>", html.EscapeString(title), html.EscapeString(title))
	for _, e := range list {
		href, label := e.name, e.name
		if e.dir {
			href += "/"
			label += "/"
		}
		fmt.Fprintf(&b, `<li><a href="./%s">%s</a> %d bytes</li>`, html.EscapeString(pathEscape(href)), html.EscapeString(label), e.size)
	}
	b.WriteString("</ul>")
	if len(infos) > len(list) && len(list) >= maxListing {
		b.WriteString("<p>Listing truncated at 1000 entries.</p>")
	}
	fmt.Fprintf(&b, `<p><a href="/v1/artifacts/%s/%s">download .tar.gz</a></p>`, html.EscapeString(pathEscape(exec)), html.EscapeString(pathEscape(name)))
	artifactHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, b.String())
	}
}

// pathEscape escapes each segment of a slash path for a URL.
func pathEscape(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// ArtifactInfo is one top-level artifact in an execution's details.
type ArtifactInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	URL  string `json:"url"`
}

// artifactList lists an execution's top-level artifacts (contract §3,
// GET /v1/executions/:id): a file or a directory's tarball each; a listing error gives
// none rather than failing the details.
func (s *Server) artifactList(ctx context.Context, origin, exec string) []ArtifactInfo {
	prefix := "artifacts/" + exec + "/"
	infos, err := s.Blobs.List(ctx, prefix)
	out := []ArtifactInfo{}
	if err != nil {
		s.Log.Warn("artifact listing failed", "execution", exec, "err", err)
		return out
	}
	for _, in := range infos {
		name := strings.TrimPrefix(in.Key, prefix)
		if strings.Contains(name, "/") || !ValidArtifactName(name) {
			continue
		}
		out = append(out, ArtifactInfo{Name: name, Size: in.Size, URL: origin + "/v1/artifacts/" + pathEscape(exec) + "/" + pathEscape(name)})
	}
	return out
}
