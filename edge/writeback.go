package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// Writeback (contract §7): a run that declares dsl.Spec.Writeback stages its changes as
// the artifact "writeback" (manifest.json + files/<path>); after the run SUCCEEDED the
// edge validates the manifest against the declaration and commits it with its own
// GitHub credentials as one commit on a branch, with a (draft) pull request. The sandbox
// never holds a credential and only supplies contents. Whatever happens, the outcome
// is one line on the check-run; a writeback never turns the check red.
//
// The outcome is kept in KV under writeback/<exec>, so reporting the same success again
// (a restarted host re-projects) does not commit again.

// Writeback limits the edge applies whatever the run declares.
const (
	maxManifestBytes  = 1 << 20
	maxReasonsShown   = 20
	maxPathShown      = 200
	writebackArtifact = dsl.WritebackArtifact
)

// WritebackOutcome is what the writeback of an execution did.
type WritebackOutcome struct {
	Status    string   `json:"status"` // opened | updated | pushed | skipped | rejected | errored
	Line      string   `json:"line"`   // the check-run line
	Reasons   []string `json:"reasons,omitempty"`
	Number    int      `json:"number,omitempty"`
	URL       string   `json:"url,omitempty"`
	Branch    string   `json:"branch,omitempty"`
	Files     int      `json:"files,omitempty"`
	Deletions int      `json:"deletions,omitempty"`
}

func writebackKey(exec string) string { return "writeback/" + exec }

// writebackLine performs the writeback of a succeeded execution once and returns its
// check-run line ("" when the run declares no writeback).
func (s *Server) writebackLine(ctx context.Context, ex Execution, p Params) string {
	run, ok := s.Runs[ex.Run]
	if !ok || run.Spec().Writeback == nil {
		return ""
	}
	if v, found, err := s.KV.Get(ctx, writebackKey(ex.ID)); err == nil && found {
		var o WritebackOutcome
		if json.Unmarshal([]byte(v), &o) == nil && o.Line != "" {
			return o.Line
		}
	}
	o := s.Writeback(ctx, ex, p, run.Spec().Writeback)
	b, _ := json.Marshal(o)
	if err := s.KV.Put(ctx, writebackKey(ex.ID), string(b), 0); err != nil {
		s.Log.Warn("writeback outcome not stored", "execution", ex.ID, "err", err)
	}
	return o.Line
}

// Writeback reads, validates and commits the writeback artifact of execution ex.
func (s *Server) Writeback(ctx context.Context, ex Execution, p Params, w *dsl.Writeback) WritebackOutcome {
	skipped := func(why string) WritebackOutcome {
		return WritebackOutcome{Status: "skipped", Line: "writeback skipped — " + why}
	}
	rejected := func(reasons []string) WritebackOutcome {
		shown := reasons
		if len(shown) > maxReasonsShown {
			shown = append(append([]string{}, shown[:maxReasonsShown]...), fmt.Sprintf("… and %d more", len(reasons)-maxReasonsShown))
		}
		return WritebackOutcome{Status: "rejected", Reasons: reasons, Line: "writeback rejected — " + strings.Join(shown, "; ")}
	}
	errored := func(err error) WritebackOutcome {
		s.Log.Error("writeback errored", "execution", ex.ID, "err", err)
		return WritebackOutcome{Status: "errored", Line: "writeback rejected — writeback errored — see the edge's logs"}
	}

	prefix := "artifacts/" + ex.ID + "/" + writebackArtifact + "/"
	body, _, err := s.Blobs.Get(ctx, prefix+dsl.WritebackManifestFile)
	if errors.Is(err, ErrBlobNotFound) {
		return skipped("no writeback manifest produced")
	} else if err != nil {
		return errored(fmt.Errorf("read manifest: %w", err))
	}
	raw, err := io.ReadAll(io.LimitReader(body, maxManifestBytes+1))
	body.Close()
	if err != nil {
		return errored(fmt.Errorf("read manifest: %w", err))
	}
	m, err := ParseWritebackManifest(raw)
	if err != nil {
		return rejected([]string{"malformed-manifest: " + err.Error()})
	}
	if len(m.Entries) == 0 {
		return skipped("no changes")
	}

	sizes := map[string]int64{}
	for _, e := range m.Entries {
		if e.Deleted || pathProblem(e.Path) != "" {
			continue
		}
		meta, err := s.Blobs.Head(ctx, prefix+"files/"+e.Path)
		if errors.Is(err, ErrBlobNotFound) {
			continue // reported by ValidateWriteback as missing-content
		} else if err != nil {
			return errored(fmt.Errorf("size of %s: %w", e.Path, err))
		}
		sizes[e.Path] = meta.Size
	}
	writes, reasons := ValidateWriteback(w, m, func(path string) (int64, bool) {
		n, ok := sizes[path]
		return n, ok
	})
	if len(reasons) > 0 {
		return rejected(reasons)
	}
	if s.GitHub == nil {
		return skipped("GitHub App credentials not configured on this deploy")
	}

	files := make([]PRFile, 0, len(writes))
	for _, e := range writes {
		if e.Deleted {
			files = append(files, PRFile{Path: e.Path, Delete: true})
			continue
		}
		b, _, err := s.Blobs.Get(ctx, prefix+"files/"+e.Path)
		if err != nil {
			return errored(fmt.Errorf("read %s: %w", e.Path, err))
		}
		content, err := io.ReadAll(io.LimitReader(b, dsl.DefaultWritebackMaxBytes*4))
		b.Close()
		if err != nil {
			return errored(fmt.Errorf("read %s: %w", e.Path, err))
		}
		files = append(files, PRFile{Path: e.Path, Content: content, Executable: e.Mode == "100755"})
	}
	spec := PullRequestSpec{Branch: w.HeadBranch(ex.ID), Base: w.BaseBranch, CommitMessage: w.CommitMessage, Files: files, KeepExisting: w.KeepExisting}
	if spec.Base == "" {
		spec.Base, _ = strings.CutPrefix(p.Ref, "refs/heads/")
		if !strings.HasPrefix(p.Ref, "refs/heads/") {
			spec.Base = "" // the repository's default branch
		}
	}
	if w.PR != nil {
		spec.PR = &PROptions{Title: w.PR.Title, Body: w.PR.Body, Draft: !w.PR.Ready}
	}
	res, err := s.GitHub.OpenPullRequest(ctx, p.InstallationID, ex.Repo, spec)
	if err != nil {
		return errored(err)
	}
	o := WritebackOutcome{Branch: res.Branch, Files: res.Files, Deletions: res.Deletions, Number: res.Number, URL: res.URL}
	counts := fmt.Sprintf("(%d file(s), %d deletion(s))", res.Files, res.Deletions)
	switch {
	case res.Skipped != "":
		o.Status, o.Line = "skipped", "writeback skipped — "+res.Skipped
	case res.Number == 0:
		o.Status, o.Line = "pushed", fmt.Sprintf("writeback pushed branch `%s` %s", res.Branch, counts)
	case res.Created:
		o.Status, o.Line = "opened", fmt.Sprintf("writeback opened PR [#%d](%s) %s", res.Number, res.URL, counts)
	default:
		o.Status, o.Line = "updated", fmt.Sprintf("writeback updated PR [#%d](%s) %s", res.Number, res.URL, counts)
	}
	s.Log.Info("writeback done", "execution", ex.ID, "status", o.Status, "pr", o.Number, "files", o.Files, "deletions", o.Deletions)
	return o
}

// ParseWritebackManifest decodes manifest.json strictly: one object with "entries",
// each {"path", "mode"?, "deleted"?}, nothing else.
func ParseWritebackManifest(raw []byte) (dsl.WritebackManifest, error) {
	var m dsl.WritebackManifest
	if len(raw) > maxManifestBytes {
		return m, fmt.Errorf("manifest.json is larger than %d bytes", maxManifestBytes)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("manifest.json: %s", clipReason(err.Error()))
	}
	if dec.More() {
		return m, errors.New("manifest.json has data after the object")
	}
	if m.Entries == nil {
		return m, errors.New(`manifest.json has no "entries"`)
	}
	return m, nil
}

// ValidateWriteback checks every entry of a manifest against the run's declaration and
// returns the entries to commit, or every reason to refuse it (never only the first):
// too-many-files; per entry empty-path, invalid-character, absolute-path,
// path-traversal (a ".." segment), dot-segment (an empty or "." segment), git-internal,
// duplicate, workflows (under .github/workflows/ without AllowWorkflows; checked before
// the allowlist), not-allowlisted, unsupported-mode / symlink, missing-content; and
// too-large for the total of the written files. size gives a written file's bytes.
func ValidateWriteback(w *dsl.Writeback, m dsl.WritebackManifest, size func(path string) (int64, bool)) (writes []dsl.WritebackEntry, reasons []string) {
	maxBytes, maxFiles := w.Limits()
	if len(m.Entries) > maxFiles {
		reasons = append(reasons, fmt.Sprintf("too-many-files: %d entries (at most %d)", len(m.Entries), maxFiles))
	}
	globs := make([]pattern.Glob, 0, len(w.PathAllowlist))
	for _, g := range w.PathAllowlist {
		globs = append(globs, pattern.CompileGlob(g))
	}
	seen := map[string]bool{}
	var total int64
	for i, e := range m.Entries {
		if why := pathProblem(e.Path); why != "" {
			if e.Path == "" {
				reasons = append(reasons, fmt.Sprintf("%s: entry %d", why, i))
			} else {
				reasons = append(reasons, why+": "+showPath(e.Path))
			}
			continue
		}
		if seen[e.Path] {
			reasons = append(reasons, "duplicate: "+showPath(e.Path))
			continue
		}
		seen[e.Path] = true
		if isWorkflowPath(e.Path) && !w.AllowWorkflows {
			reasons = append(reasons, "workflows: "+showPath(e.Path)+" (the run does not allow .github/workflows changes)")
			continue
		}
		if len(globs) > 0 && !matchesAny(globs, e.Path) {
			reasons = append(reasons, "not-allowlisted: "+showPath(e.Path))
			continue
		}
		if e.Deleted {
			if e.Mode != "" && e.Mode != "100644" && e.Mode != "100755" {
				reasons = append(reasons, "unsupported-mode: "+showPath(e.Path))
				continue
			}
			writes = append(writes, e)
			continue
		}
		switch e.Mode {
		case "", "100644", "100755":
		case "120000":
			reasons = append(reasons, "symlink: "+showPath(e.Path)+" (symlinks are not written back)")
			continue
		default:
			reasons = append(reasons, fmt.Sprintf("unsupported-mode: %s (%s)", showPath(e.Path), clipReason(e.Mode)))
			continue
		}
		n, ok := size(e.Path)
		if !ok {
			reasons = append(reasons, "missing-content: "+showPath(e.Path))
			continue
		}
		total += n
		writes = append(writes, e)
	}
	if total > maxBytes {
		reasons = append(reasons, fmt.Sprintf("too-large: %d bytes written (at most %d)", total, maxBytes))
	}
	if len(reasons) > 0 {
		return nil, reasons
	}
	return writes, nil
}

// pathProblem names what is wrong with a manifest path, or returns "".
func pathProblem(p string) string {
	switch {
	case p == "":
		return "empty-path"
	case !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }):
		return "invalid-character"
	case strings.HasPrefix(p, "/") || len(p) >= 2 && p[1] == ':' && (p[0]|0x20 >= 'a' && p[0]|0x20 <= 'z'):
		return "absolute-path"
	case len(p) > 4096:
		return "invalid-character"
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "..":
			return "path-traversal"
		case seg == "" || seg == ".":
			return "dot-segment"
		case strings.EqualFold(seg, ".git"):
			return "git-internal"
		}
	}
	return ""
}

func isWorkflowPath(p string) bool {
	return strings.HasPrefix(strings.ToLower(p), ".github/workflows/")
}

func matchesAny(globs []pattern.Glob, p string) bool {
	for _, g := range globs {
		if g.Match(p) {
			return true
		}
	}
	return false
}

// showPath renders a path from the sandbox for the check-run: in a code span that it
// cannot break out of, clipped.
func showPath(p string) string {
	p = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '`' {
			return '?'
		}
		return r
	}, p)
	if len(p) > maxPathShown {
		cut := maxPathShown
		for cut > 0 && !utf8.RuneStart(p[cut]) {
			cut--
		}
		p = p[:cut] + "…"
	}
	return "`" + p + "`"
}

func clipReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == '`' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
