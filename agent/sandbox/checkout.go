package sandbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

var (
	ownerName = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	hexSHA    = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
)

// Checkout clones repo at sha into <workspace>/<name> and returns the directory.
//
// repo is owner/name, cloned from GitHub over HTTPS with a token from GitToken (sent
// as an HTTP header through git's environment, so it is never written to the
// repository's config or shown in a process listing; the remote URL never carries a
// credential). In local mode repo may also be an absolute path or a file:// URL.
//
// Only the commit is fetched (depth 1) when sha is a full id; an abbreviated sha, or a
// server that refuses fetching by id, falls back to fetching branches and tags. A
// directory already at sha is returned untouched, which makes Checkout cheap to call
// again before each command.
func (s *Sandbox) Checkout(ctx context.Context, repo, sha string) (string, error) {
	red := s.cfg.Redactor
	fail := func(cause string) error {
		return &dsl.CheckoutFailed{Repo: repo, SHA: sha, Cause: red.String(strings.TrimSpace(cause))}
	}
	sha = strings.ToLower(strings.TrimSpace(sha))
	if !hexSHA.MatchString(sha) {
		return "", fail("not a commit SHA (7 to 64 hex digits)")
	}
	remote, name, fromGitHub, err := s.source(repo)
	if err != nil {
		return "", fail(err.Error())
	}
	dir := filepath.Join(s.cfg.Workspace, name)
	unlock := s.lockDir(dir)
	defer unlock()

	env := s.gitEnv()
	if head, ok := s.head(ctx, dir, env); ok && strings.HasPrefix(head, sha) && s.originIs(ctx, dir, env, remote) {
		return dir, nil
	}

	if env, err = s.withToken(ctx, env, repo, fromGitHub); err != nil {
		return "", fail(err.Error())
	}

	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil && !s.originIs(ctx, dir, env, remote) {
		if err := os.RemoveAll(dir); err != nil { // another repository had the name
			return "", fail(err.Error())
		}
	} else if err != nil {
		_ = os.RemoveAll(dir) // not a repository: start clean
	}
	// A new repository gets its origin once, after the checkout: the fetches name the
	// URL themselves, so a failed one leaves no origin and the next call starts clean.
	fresh := false
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		if out, err := s.git(ctx, "", env, "init", "--quiet", dir); err != nil {
			return "", fail("git init: " + out)
		}
		fresh = true
	}

	// No gc or maintenance after a fetch into a workspace that lives for one run: one
	// process less on every checkout (the config keys are ignored by a git without them).
	// The pack is kept as it came (fetch.unpackLimit=1): a small repository's objects
	// are otherwise written one file each, which made its fetch a third slower.
	fetch := []string{"-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "fetch.unpackLimit=1", "fetch", "--quiet", "--no-tags"}
	target := ""
	if len(sha) == 40 || len(sha) == 64 {
		if _, err := s.git(ctx, dir, env, append(fetch, "--depth=1", remote, sha)...); err == nil {
			target = sha
		}
	}
	if target == "" {
		args := fetch
		if _, err := os.Stat(filepath.Join(dir, ".git", "shallow")); err == nil {
			args = append(args, "--unshallow")
		}
		args = append(args, remote, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
		if out, err := s.git(ctx, dir, env, args...); err != nil {
			return "", fail("git fetch: " + out)
		}
		resolved, err := s.git(ctx, dir, env, "rev-parse", "--verify", "--quiet", sha+"^{commit}")
		if err != nil {
			return "", fail("commit " + sha + " is not in " + repo)
		}
		target = resolved
	}
	if out, err := s.git(ctx, dir, env, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", target); err != nil {
		return "", fail("git checkout: " + out)
	}
	// The remote never holds a credential (the token travels as a header): a reused
	// repository's origin was compared with it above, a new one gets it here.
	if fresh {
		if out, err := s.git(ctx, dir, env, "remote", "add", "origin", remote); err != nil {
			return "", fail("git remote add: " + out)
		}
	}
	head, ok := s.head(ctx, dir, env)
	if !ok || !strings.HasPrefix(head, sha) {
		return "", fail("HEAD is " + head + " after checkout")
	}
	s.remember(dir, remote)
	s.cfg.Log.Info("checked out", "repo", repo, "sha", head, "dir", dir)
	return dir, nil
}

// head is the commit checked out in dir. A detached HEAD (what Checkout leaves) is
// read from .git/HEAD, without a git process; anything else asks git.
func (s *Sandbox) head(ctx context.Context, dir string, env []string) (string, bool) {
	if b, err := os.ReadFile(filepath.Join(dir, ".git", "HEAD")); err == nil {
		if h := strings.TrimSpace(string(b)); (len(h) == 40 || len(h) == 64) && hexSHA.MatchString(h) {
			return h, true
		}
	} else if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		return "", false
	}
	h, err := s.git(ctx, dir, env, "rev-parse", "HEAD")
	return h, err == nil
}

// remember notes the repository configuration Checkout left in dir, so the next
// Checkout of this attempt (each command step checks again) knows the origin without
// a git process while the file is unchanged.
func (s *Sandbox) remember(dir, remote string) {
	cfg, err := os.ReadFile(filepath.Join(dir, ".git", "config"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		delete(s.checked, dir)
		return
	}
	s.checked[dir] = checkedOut{remote: remote, config: cfg}
}

// checkedOut is what Checkout left in a directory: its origin and the repository's
// configuration file as it was then.
type checkedOut struct {
	remote string
	config []byte
}

// withToken adds the installation token for repo to a git environment, as an HTTP
// header (never in the remote URL or the repository's config).
func (s *Sandbox) withToken(ctx context.Context, env []string, repo string, fromGitHub bool) ([]string, error) {
	if !fromGitHub || s.cfg.GitToken == nil {
		return env, nil
	}
	token, err := s.cfg.GitToken(ctx, repo)
	if err != nil {
		return env, errors.New("git credentials: " + err.Error())
	}
	if token != "" {
		basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
		s.cfg.Redactor.Add(token, basic)
		env = append(env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Basic "+basic)
	}
	return env, nil
}

// source maps repo to the URL git fetches from and the directory name.
func (s *Sandbox) source(repo string) (remote, name string, fromGitHub bool, err error) {
	switch {
	case strings.HasPrefix(repo, "file://") || filepath.IsAbs(repo):
		if !s.cfg.Local {
			return "", "", false, errors.New("local repository paths are only accepted by a local agent")
		}
		p := strings.TrimPrefix(repo, "file://")
		name = strings.TrimSuffix(filepath.Base(filepath.Clean(p)), ".git")
		return repo, safeName(name), false, nil
	case ownerName.MatchString(repo):
		owner, n, _ := strings.Cut(strings.TrimSuffix(repo, ".git"), "/")
		if owner == "." || owner == ".." || n == "." || n == ".." || n == "" {
			return "", "", false, errors.New("not owner/name")
		}
		return strings.TrimRight(s.cfg.GitHubURL, "/") + "/" + owner + "/" + n + ".git", safeName(n), true, nil
	}
	return "", "", false, errors.New("not owner/name")
}

func safeName(n string) string {
	n = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 {
			return '-'
		}
		return r
	}, n)
	if n == "" || n == "." || n == ".." {
		return "repo"
	}
	return n
}

func (s *Sandbox) originIs(ctx context.Context, dir string, env []string, remote string) bool {
	s.mu.Lock()
	c, ok := s.checked[dir]
	s.mu.Unlock()
	if ok && c.remote == remote {
		if cfg, err := os.ReadFile(filepath.Join(dir, ".git", "config")); err == nil && bytes.Equal(cfg, c.config) {
			return true // as this attempt's Checkout left it
		}
	}
	url, err := s.git(ctx, dir, env, "remote", "get-url", "origin")
	return err == nil && url == remote
}

func (s *Sandbox) lockDir(dir string) func() {
	s.mu.Lock()
	l := s.repoLock[dir]
	if l == nil {
		l = &sync.Mutex{}
		s.repoLock[dir] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (s *Sandbox) gitEnv() []string {
	env := s.baseEnv()
	env["GIT_TERMINAL_PROMPT"] = "0"
	env["GIT_CONFIG_NOSYSTEM"] = "1"
	env["LC_ALL"] = "C"
	env["GIT_CEILING_DIRECTORIES"] = s.cfg.Workspace // never find a repository above the workspace
	return envList(env)
}

// git runs one git command (in its own process group, killed whole if ctx ends) and
// returns its trimmed output: stdout on success, the end of stderr on failure.
func (s *Sandbox) git(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = env
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		if msg == "" {
			msg = err.Error()
		}
		return s.cfg.Redactor.String(msg), err
	}
	return strings.TrimSpace(stdout.String()), nil
}
