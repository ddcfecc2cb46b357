package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// MaxReadFile bounds ReadFile: a step result holds at most 1 MiB anyway.
const MaxReadFile = 16 << 20

// path resolves a sandbox path: relative paths are under the workspace.
func (s *Sandbox) path(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(s.cfg.Workspace, p)
}

// ReadFile implements dsl.Sandbox.
func (s *Sandbox) ReadFile(_ context.Context, p string) ([]byte, error) {
	full := s.path(p)
	st, err := os.Stat(full)
	switch {
	case err != nil:
		return nil, &dsl.ReadFileFailed{Path: p, Message: s.cfg.Redactor.String(strings.TrimPrefix(err.Error(), "stat "+full+": "))}
	case st.IsDir():
		return nil, &dsl.ReadFileFailed{Path: p, Message: "is a directory"}
	case st.Size() > MaxReadFile:
		return nil, &dsl.ReadFileFailed{Path: p, Message: "larger than 16 MiB"}
	}
	b, err := os.ReadFile(full)
	if err != nil {
		return nil, &dsl.ReadFileFailed{Path: p, Message: s.cfg.Redactor.String(err.Error())}
	}
	return b, nil
}

// Exists implements dsl.Sandbox.
func (s *Sandbox) Exists(_ context.Context, p string) (bool, error) {
	_, err := os.Lstat(s.path(p))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// Changes implements dsl.Sandbox with git status: tracked files changed or deleted and
// untracked files that are not ignored (renames appear as a deletion and an addition).
func (s *Sandbox) Changes(ctx context.Context, dir string) ([]dsl.Change, error) {
	dir = s.path(dir)
	out, err := s.gitRaw(ctx, dir, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--ignore-submodules=all")
	if err != nil {
		return nil, &dsl.ExecFailed{ExitCode: -1, Cause: "git status: " + strings.TrimSpace(string(out))}
	}
	var changes []dsl.Change
	for rec := range bytes.SplitSeq(out, []byte{0}) {
		if len(rec) < 4 {
			continue
		}
		xy, p := string(rec[:2]), string(rec[3:])
		ch := dsl.Change{Path: p}
		if xy[0] == 'D' || xy[1] == 'D' {
			ch.Deleted = true
			changes = append(changes, ch)
			continue
		}
		st, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(p)))
		if errors.Is(err, fs.ErrNotExist) {
			ch.Deleted = true
			changes = append(changes, ch)
			continue
		} else if err != nil {
			return nil, err
		}
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			ch.Mode = "120000"
		case st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0:
			ch.Mode, ch.Size = "100755", st.Size()
		case st.Mode().IsRegular():
			ch.Mode, ch.Size = "100644", st.Size()
		default:
			continue // a directory (nested repository) or a special file
		}
		changes = append(changes, ch)
	}
	slices.SortFunc(changes, func(a, b dsl.Change) int { return strings.Compare(a.Path, b.Path) })
	return changes, nil
}

// gitRaw runs git in dir and returns its stdout untouched (the end of stderr on
// failure), in a process group of its own killed whole if ctx ends.
func (s *Sandbox) gitRaw(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = s.gitEnv()
	setProcessGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := stderr.Bytes()
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return []byte(s.cfg.Redactor.String(string(msg))), err
	}
	return stdout.Bytes(), nil
}
