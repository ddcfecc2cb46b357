// Package gittest makes real git repositories for tests.
package gittest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Repo makes a repository with n commits, each changing n.txt and carrying a passing
// test.sh, and returns its path and the commits' shas in order.
func Repo(t testing.TB, n int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	git := func(args ...string) string { t.Helper(); return strings.TrimSpace(run(t, dir, nil, args...)) }
	git("init", "-q", "-b", "main")
	var shas []string
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, "n.txt"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "test.sh"), []byte("#!/bin/sh\necho tests pass\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		git("add", ".")
		git("commit", "-q", "-m", fmt.Sprint("commit ", i))
		shas = append(shas, git("rev-parse", "HEAD"))
	}
	return dir, shas
}

// RepoWith makes a repository with one commit of files (slash-separated paths; *.sh
// files are executable) and returns its path and the commit's sha.
func RepoWith(t testing.TB, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	git := func(args ...string) string { t.Helper(); return strings.TrimSpace(run(t, dir, nil, args...)) }
	git("init", "-q", "-b", "main")
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	git("add", ".")
	git("commit", "-q", "-m", "fixture")
	return dir, git("rev-parse", "HEAD")
}

// run runs git in dir as the test author (plus env) and returns its output; a failure
// fails the test.
func run(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}
