// Package prreview is the logic of the pr-review run, without I/O: the diff prepared
// for a model (noise stripped, capped with a visible marker), the risk tier and the
// reviewers it calls for, the reviewers run in parallel through a model gateway, the
// coordination of their findings into a verdict, the re-review that carries findings
// across pushes, and the comment, neutralised against whatever the model wrote.
package prreview

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// FileDiff is one file's section of a unified diff.
type FileDiff struct {
	Path    string // the b/ path ("" when the file was deleted: then the a/ path)
	Text    string // the whole section, from its "diff --git" line
	Added   int
	Removed int
	Hunks   []Hunk
}

// Hunk is one @@ -a,b +c,d @@ range.
type Hunk struct {
	OldStart, OldLines, NewStart, NewLines int
}

// SplitDiff cuts a unified diff (git diff output) into its files.
func SplitDiff(diff string) []FileDiff {
	var files []FileDiff
	var cur *FileDiff
	var text strings.Builder
	flush := func() {
		if cur != nil {
			cur.Text = text.String()
			files = append(files, *cur)
		}
		text.Reset()
	}
	for line := range strings.SplitAfterSeq(diff, "\n") {
		if line == "" {
			continue
		}
		body := strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(body, "diff --git "):
			flush()
			cur = &FileDiff{Path: gitPath(body)}
		case cur == nil:
			continue // preamble before the first file
		case strings.HasPrefix(body, "+++ "):
			if p := strings.TrimPrefix(body, "+++ "); p != "/dev/null" {
				cur.Path = strings.TrimPrefix(unquote(p), "b/")
			}
		case strings.HasPrefix(body, "--- "):
		case strings.HasPrefix(body, "@@ "):
			if h, ok := parseHunk(body); ok {
				cur.Hunks = append(cur.Hunks, h)
			}
		case strings.HasPrefix(body, "+"):
			cur.Added++
		case strings.HasPrefix(body, "-"):
			cur.Removed++
		}
		if cur != nil {
			text.WriteString(line)
		}
	}
	flush()
	return files
}

// gitPath reads the b/ path of a "diff --git a/x b/x" line.
func gitPath(line string) string {
	rest := strings.TrimPrefix(line, "diff --git ")
	if i := strings.LastIndex(rest, " b/"); i >= 0 {
		return unquote(rest[i+3:])
	}
	return unquote(rest)
}

func unquote(p string) string {
	if strings.HasPrefix(p, `"`) {
		if u, err := strconv.Unquote(p); err == nil {
			return u
		}
	}
	return p
}

func parseHunk(line string) (Hunk, bool) {
	// @@ -12,3 +12,4 @@ optional context
	f := strings.Fields(line)
	if len(f) < 3 {
		return Hunk{}, false
	}
	os, ol, ok1 := rng(strings.TrimPrefix(f[1], "-"))
	ns, nl, ok2 := rng(strings.TrimPrefix(f[2], "+"))
	return Hunk{os, ol, ns, nl}, ok1 && ok2
}

func rng(s string) (start, n int, ok bool) {
	a, b, has := strings.Cut(s, ",")
	start, err := strconv.Atoi(a)
	if err != nil {
		return 0, 0, false
	}
	n = 1
	if has {
		if n, err = strconv.Atoi(b); err != nil {
			return 0, 0, false
		}
	}
	return start, n, true
}

// Noise is a file no reviewer should read: lockfiles, minified and generated files,
// build output and vendored code, snapshots and source maps (contract §8).
func Noise(p string) bool {
	base := path.Base(p)
	lower := strings.ToLower(base)
	switch {
	case strings.HasSuffix(lower, "lock"), strings.HasSuffix(lower, "lockfile"), strings.HasSuffix(lower, ".lock"),
		lower == "go.sum", strings.HasSuffix(lower, "-lock.json"), strings.HasSuffix(lower, "-lock.yaml"),
		strings.HasSuffix(lower, ".min.js"), strings.HasSuffix(lower, ".min.css"),
		strings.HasSuffix(lower, ".snap"), strings.HasSuffix(lower, ".map"),
		strings.Contains(lower, ".generated."), strings.HasSuffix(lower, ".pb.go"), strings.HasSuffix(lower, "_gen.go"):
		return true
	}
	for _, dir := range []string{"dist/", "build/", "out/", "vendor/", "node_modules/"} {
		if strings.HasPrefix(p, dir) || strings.Contains(p, "/"+dir) {
			return true
		}
	}
	return false
}

// Prepared is a diff ready for reviewers.
type Prepared struct {
	Diff      string   `json:"diff"`
	Files     []string `json:"files"`             // reviewed files
	Dropped   []string `json:"dropped,omitempty"` // noise, not sent
	Changed   int      `json:"changed"`           // changed lines of the reviewed files
	Tier      string   `json:"tier"`
	FullChars int      `json:"fullChars"` // size before the cap
	Truncated bool     `json:"truncated,omitempty"`
}

// Tiers.
const (
	TierTrivial = "trivial"
	TierLite    = "lite"
	TierFull    = "full"
)

// TruncationMarker ends a diff cut to fit the model's context.
func TruncationMarker(n int) string {
	return fmt.Sprintf("\n\n…(diff truncated at %d chars — review covers the first portion only)…\n", n)
}

// Prepare strips noise from a diff, computes its tier, and caps it at maxChars
// (0 = no cap) with the truncation marker.
func Prepare(diff string, maxChars int) Prepared {
	var p Prepared
	var kept strings.Builder
	var paths []string
	for _, f := range SplitDiff(diff) {
		if Noise(f.Path) {
			p.Dropped = append(p.Dropped, f.Path)
			continue
		}
		kept.WriteString(f.Text)
		p.Files = append(p.Files, f.Path)
		p.Changed += f.Added + f.Removed
		paths = append(paths, f.Path)
	}
	p.Diff = kept.String()
	p.FullChars = len(p.Diff)
	p.Tier = Tier(paths, p.Changed)
	p.Diff, p.Truncated = Cap(p.Diff, maxChars)
	return p
}

// Cap cuts diff to at most maxChars (at a line end when there is one) and appends
// the marker; 0 means no cap.
func Cap(diff string, maxChars int) (string, bool) {
	if maxChars <= 0 || len(diff) <= maxChars {
		return diff, false
	}
	cut := diff[:maxChars]
	if i := strings.LastIndexByte(cut, '\n'); i > maxChars/2 {
		cut = cut[:i+1]
	}
	return strings.TrimRight(cut, "\n") + TruncationMarker(maxChars), true
}

// riskyPaths make a change full-tier whatever its size (contract §8).
var riskyPaths = []string{".github/", "Dockerfile", "wrangler.", "package.json", "pnpm-lock", "/auth", "/security", "/secrets",
	"migration", "infra/"}

// Tier is the risk tier of a change: touching a risky path or more than 200 changed
// lines is full, more than 25 lite, else trivial.
func Tier(paths []string, changed int) string {
	for _, p := range paths {
		for _, r := range riskyPaths {
			if strings.Contains(p, r) || (strings.HasPrefix(r, "/") && strings.HasPrefix(p, r[1:])) {
				return TierFull
			}
		}
	}
	switch {
	case changed > 200:
		return TierFull
	case changed > 25:
		return TierLite
	}
	return TierTrivial
}

// DiffCommand is the three-dot diff of a pull request: what head changed since it
// left base (changes that landed on base meanwhile are not the pull request's).
func DiffCommand(baseSHA, headSHA string) string {
	return "git diff --unified=3 --no-color --no-ext-diff " + baseSHA + "..." + headSHA
}
