package sandbox_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/agent/sandbox"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/ci"
)

// gitRepo makes a real repository with two commits and returns its path and the
// commits' SHAs, oldest first.
func gitRepo(t *testing.T, dir string) (string, []string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "--quiet", "--initial-branch=main")
	var shas []string
	for _, content := range []string{"one\n", "two\n"} {
		if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		run("add", "VERSION")
		run("commit", "--quiet", "-m", strings.TrimSpace(content))
		shas = append(shas, run("rev-parse", "HEAD"))
	}
	return dir, shas
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckoutLocalRepositoryAtASha(t *testing.T) {
	src, shas := gitRepo(t, filepath.Join(t.TempDir(), "web"))
	var ws string
	sb := newSandbox(t, func(c *sandbox.Config) { ws = c.Workspace })
	ctx := context.Background()

	dir, err := sb.Checkout(ctx, src, shas[0])
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(ws, "web") || read(t, filepath.Join(dir, "VERSION")) != "one\n" {
		t.Fatalf("dir %s has %q", dir, read(t, filepath.Join(dir, "VERSION")))
	}
	// Idempotent: a second call leaves the directory (and what a command left in it) alone.
	if err := os.WriteFile(filepath.Join(dir, "build.out"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if again, err := sb.Checkout(ctx, "file://"+src, shas[0]); err != nil || again != dir {
		t.Fatalf("again: %s %v", again, err)
	}
	// Moving to another commit, by an abbreviated SHA (fetch-by-id fallback).
	if _, err := sb.Checkout(ctx, src, shas[1][:10]); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(dir, "VERSION")) != "two\n" {
		t.Fatal("not at the second commit")
	}
}

func TestCheckoutRefusesLocalPathsOutsideLocalMode(t *testing.T) {
	src, shas := gitRepo(t, filepath.Join(t.TempDir(), "web"))
	sb := newSandbox(t, func(c *sandbox.Config) { c.Local = false })
	for _, repo := range []string{src, "file://" + src} {
		_, err := sb.Checkout(context.Background(), repo, shas[0])
		var cf *dsl.CheckoutFailed
		if !errors.As(err, &cf) || !strings.Contains(cf.Cause, "local agent") {
			t.Fatalf("%s: got %v", repo, err)
		}
	}
}

func TestCheckoutRejectsBadInput(t *testing.T) {
	sb := newSandbox(t, nil)
	for _, c := range []struct{ repo, sha string }{
		{"acme/web", "main"},
		{"acme/web; rm -rf /", "0123456"},
		{"../web", "0123456"},
		{"acme/..", "0123456"},
	} {
		var cf *dsl.CheckoutFailed
		if _, err := sb.Checkout(context.Background(), c.repo, c.sha); !errors.As(err, &cf) {
			t.Errorf("%+v: got %v", c, err)
		}
	}
}

func TestCheckoutUnknownShaFails(t *testing.T) {
	src, _ := gitRepo(t, filepath.Join(t.TempDir(), "web"))
	sb := newSandbox(t, nil)
	_, err := sb.Checkout(context.Background(), src, strings.Repeat("ab", 20))
	var cf *dsl.CheckoutFailed
	if !errors.As(err, &cf) {
		t.Fatalf("got %v", err)
	}
}

// TestCheckoutFromGitHubUsesTheTokenAndKeepsItOffDisk serves a repository over git's
// smart HTTP protocol (git http-backend) behind the Basic auth GitHub takes for
// installation tokens.
func TestCheckoutFromGitHubUsesTheTokenAndKeepsItOffDisk(t *testing.T) {
	backend := ci.Tool(t, "git")
	root := t.TempDir()
	_, shas := gitRepo(t, filepath.Join(root, "acme", "web.git"))
	const token = "ghs_installationtoken123"
	var authed atomic.Int32
	cgiHandler := &cgi.Handler{
		Path: backend,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + root},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
			http.Error(w, "auth required", http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		cgiHandler.ServeHTTP(w, r)
	}))
	defer srv.Close()

	var asked []string
	sb := newSandbox(t, func(c *sandbox.Config) {
		c.Local = false
		c.GitHubURL = srv.URL
		c.GitToken = func(_ context.Context, repo string) (string, error) {
			asked = append(asked, repo)
			return token, nil
		}
	})
	dir, err := sb.Checkout(context.Background(), "acme/web", shas[0])
	if err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(dir, "VERSION")) != "one\n" || authed.Load() == 0 || len(asked) != 1 || asked[0] != "acme/web" {
		t.Fatalf("checkout: authed=%d asked=%v", authed.Load(), asked)
	}
	if cfg := read(t, filepath.Join(dir, ".git", "config")); strings.Contains(cfg, token) || strings.Contains(cfg, "extraHeader") ||
		!strings.Contains(cfg, srv.URL+"/acme/web.git") {
		t.Fatalf(".git/config:\n%s", cfg)
	}

	// Without the token the server refuses, and the failure is a clean CheckoutFailed.
	sb2 := newSandbox(t, func(c *sandbox.Config) { c.Local = false; c.GitHubURL = srv.URL })
	_, err = sb2.Checkout(context.Background(), "acme/web", shas[0])
	var cf *dsl.CheckoutFailed
	if !errors.As(err, &cf) || cf.Repo != "acme/web" {
		t.Fatalf("anonymous: got %v", err)
	}
	// A failing credential source is a CheckoutFailed too.
	sb3 := newSandbox(t, func(c *sandbox.Config) {
		c.Local = false
		c.GitHubURL = srv.URL
		c.GitToken = func(context.Context, string) (string, error) { return "", errors.New("404 not found") }
	})
	if _, err := sb3.Checkout(context.Background(), "acme/web", shas[0]); !errors.As(err, &cf) || !strings.Contains(cf.Cause, "git credentials") {
		t.Fatalf("no credentials: got %v", err)
	}
}

// gitCalls puts a git on PATH that records each invocation's subcommand (the first
// argument that is not an option or its value) in the returned file, then runs git.
func gitCalls(t *testing.T) string {
	t.Helper()
	real, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	bin, log := t.TempDir(), filepath.Join(t.TempDir(), "calls")
	shim := "#!/bin/sh\nfor a in \"$@\"; do case \"$prev\" in -C|-c) prev=; continue;; esac\n" +
		"case \"$a\" in -*) prev=$a;; *) echo \"$a\" >> " + log + "; break;; esac; done\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "git"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(log)
	return strings.Fields(string(b))
}

// TestCheckoutSpawnsFewGitProcesses: a checkout is the fixed cost of every run. A new
// repository takes init, fetch (from the URL itself), checkout and one remote add;
// checking the same commit again in the attempt takes no git process (HEAD and the
// configuration are read from disk). Before, the first took six (remote add before the
// fetch, set-url and rev-parse after) and each check two (rev-parse, remote get-url).
func TestCheckoutSpawnsFewGitProcesses(t *testing.T) {
	src, shas := gitRepo(t, filepath.Join(t.TempDir(), "web"))
	log := gitCalls(t)
	var ws string
	sb := newSandbox(t, func(c *sandbox.Config) { ws = c.Workspace })
	ctx := context.Background()
	dir, err := sb.Checkout(ctx, src, shas[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(calls(t, log), " "); got != "init fetch checkout remote" {
		t.Fatalf("a new checkout ran git %q", got)
	}
	for range 2 {
		if _, err := sb.Checkout(ctx, src, shas[0]); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(t, log); len(got) != 0 {
		t.Fatalf("checking the same commit again ran git %q", got)
	}
	// The next attempt's sandbox has no memory of it: it asks git for the origin once.
	sb2 := newSandbox(t, func(c *sandbox.Config) { c.Workspace = ws })
	if again, err := sb2.Checkout(ctx, src, shas[0]); err != nil || again != dir {
		t.Fatalf("next attempt: %s %v", again, err)
	}
	if got := strings.Join(calls(t, log), " "); got != "remote" {
		t.Fatalf("the next attempt's check ran git %q", got)
	}
	if origin := read(t, filepath.Join(dir, ".git", "config")); strings.Count(origin, "[remote \"origin\"]") != 1 || !strings.Contains(origin, "url = "+src) {
		t.Fatalf(".git/config:\n%s", origin)
	}
}

// TestCheckoutSeesWhatACommandChanged: the check without git processes trusts nothing a
// command could have changed since: a moved HEAD is checked out again, and an origin
// pointed elsewhere makes a new clone (the configuration file is compared, not only
// the remote this attempt asked for). Without the comparison the second case kept the
// other origin.
func TestCheckoutSeesWhatACommandChanged(t *testing.T) {
	src, shas := gitRepo(t, filepath.Join(t.TempDir(), "web"))
	other, _ := gitRepo(t, filepath.Join(t.TempDir(), "other", "web"))
	sb := newSandbox(t, nil)
	ctx := context.Background()
	if _, err := sb.Checkout(ctx, src, shas[1]); err != nil { // both commits on disk
		t.Fatal(err)
	}
	dir, err := sb.Checkout(ctx, src, shas[0])
	if err != nil {
		t.Fatal(err)
	}
	sh := func(command string) {
		t.Helper()
		if res, err := sb.Exec(ctx, dsl.ExecRequest{Dir: dir, Command: command, Quiet: true}); err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %+v %v", command, res, err)
		}
	}
	sh("git -c advice.detachedHead=false checkout --quiet --detach " + shas[1])
	if _, err := sb.Checkout(ctx, src, shas[0]); err != nil || read(t, filepath.Join(dir, "VERSION")) != "one\n" {
		t.Fatalf("HEAD moved by a command: %v, VERSION %q", err, read(t, filepath.Join(dir, "VERSION")))
	}
	sh("git remote set-url origin " + other + " && touch left-by-the-command")
	if _, err := sb.Checkout(ctx, src, shas[0]); err != nil {
		t.Fatal(err)
	}
	if cfg := read(t, filepath.Join(dir, ".git", "config")); strings.Contains(cfg, other) || !strings.Contains(cfg, "url = "+src) {
		t.Fatalf("origin changed by a command was kept:\n%s", cfg)
	}
	if _, err := os.Stat(filepath.Join(dir, "left-by-the-command")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("not a new clone: %v", err)
	}
}
