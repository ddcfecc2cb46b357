package gittest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Work is a repository a test writes files into and commits, on branches of its
// choosing.
type Work struct {
	t   testing.TB
	Dir string
}

// Init makes an empty repository on branch main.
func Init(t testing.TB) *Work {
	t.Helper()
	w := &Work{t: t, Dir: t.TempDir()}
	w.Git("init", "-q", "-b", "main")
	return w
}

// Git runs git in the repository and returns its trimmed output; a failure fails the test.
func (w *Work) Git(args ...string) string {
	w.t.Helper()
	// Fixed dates: the same commits give the same shas on every run.
	out := run(w.t, w.Dir, []string{"GIT_AUTHOR_DATE=2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z"}, args...)
	return strings.TrimRight(out, "\n")
}

// Write writes files (path → content; "" content deletes the file).
func (w *Work) Write(files map[string]string) {
	w.t.Helper()
	for p, content := range files {
		full := filepath.Join(w.Dir, filepath.FromSlash(p))
		if content == "" {
			if err := os.Remove(full); err != nil && !os.IsNotExist(err) {
				w.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
}

// Commit writes files, commits everything and returns the commit's sha.
func (w *Work) Commit(msg string, files map[string]string) string {
	w.t.Helper()
	w.Write(files)
	w.Git("add", "-A")
	w.Git("commit", "-q", "--allow-empty", "-m", msg)
	return w.Git("rev-parse", "HEAD")
}
