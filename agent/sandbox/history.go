package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// FetchHistory makes a checkout able to diff against base: it fetches base and
// deepens the shallow history (Checkout fetches one commit) until HEAD and base have a
// merge base, then falls back to the whole history. It implements dsl.HistoryFetcher.
func (s *Sandbox) FetchHistory(ctx context.Context, dir, base string) error {
	base = strings.ToLower(strings.TrimSpace(base))
	if !hexSHA.MatchString(base) {
		return errors.New("base " + base + " is not a commit SHA")
	}
	dir = s.path(dir)
	unlock := s.lockDir(dir)
	defer unlock()
	env := s.gitEnv()
	origin, err := s.git(ctx, dir, env, "remote", "get-url", "origin")
	if err != nil {
		return errors.New("no origin remote: " + origin)
	}
	gh := strings.TrimRight(s.cfg.GitHubURL, "/") + "/"
	if strings.HasPrefix(origin, gh) {
		if env, err = s.withToken(ctx, env, strings.TrimSuffix(strings.TrimPrefix(origin, gh), ".git"), true); err != nil {
			return err
		}
	}
	shallow := func() bool {
		_, err := os.Stat(filepath.Join(dir, ".git", "shallow"))
		return err == nil
	}
	mergeBase := func() bool {
		_, err := s.git(ctx, dir, env, "merge-base", "HEAD", base)
		return err == nil
	}
	if _, err := s.git(ctx, dir, env, "cat-file", "-e", base+"^{commit}"); err != nil {
		args := []string{"fetch", "--quiet", "--no-tags"}
		if shallow() {
			args = append(args, "--depth=50")
		}
		if out, err := s.git(ctx, dir, env, append(args, "origin", base)...); err != nil {
			return errors.New("git fetch " + base + ": " + out)
		}
	}
	for i := 0; i < 4 && shallow() && !mergeBase(); i++ {
		if out, err := s.git(ctx, dir, env, "fetch", "--quiet", "--no-tags", "--deepen=200", "origin", base); err != nil {
			return errors.New("git fetch --deepen: " + out)
		}
	}
	if shallow() && !mergeBase() {
		if out, err := s.git(ctx, dir, env, "fetch", "--quiet", "--no-tags", "--unshallow", "origin"); err != nil {
			return errors.New("git fetch --unshallow: " + out)
		}
	}
	if !mergeBase() {
		return errors.New("HEAD and " + base + " have no common history")
	}
	return nil
}

var _ dsl.HistoryFetcher = (*Sandbox)(nil)
