package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// owner is the exclusive hold of one process on a data directory: an flock on its
// lock file, kept open for the process's life, so that two stacks never recover,
// run and log the same executions. The kernel drops the lock when the process dies,
// however it dies, so a crashed owner never blocks the next start.
type owner struct {
	f    *os.File
	path string
}

// ErrDataDirInUse is returned by Open when another process owns the data directory.
var ErrDataDirInUse = errors.New("data directory in use")

// acquire takes the data directory or says who has it. It never waits: a second
// `flare up` or `flare run` on the same directory exits at once.
func acquire(dir string) (*owner, error) {
	path := LockPath(dir)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock %s: %w", path, err)
			}
			return nil, inUse(dir)
		}
		// The previous owner unlinks the file on its way out: if it did so between our
		// open and our flock, we hold a lock on a file nobody else will open. Retry on
		// the path's current file.
		var held, now syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return &owner{f: f, path: path}, nil
		}
		f.Close()
	}
}

// inUse names the process that owns dir, from what it wrote in its lock file.
func inUse(dir string) error {
	l, err := readLock(dir)
	if err != nil || l.PID == 0 {
		return fmt.Errorf("%w: %s is owned by another flare process (starting up); stop it or use another --data", ErrDataDirInUse, dir)
	}
	where := l.URL
	if where == "" {
		where = "starting up"
	}
	return fmt.Errorf("%w: %s is owned by flare pid %d at %s; stop it (or use it: flare dispatch/run find it) or use another --data",
		ErrDataDirInUse, dir, l.PID, where)
}

// write replaces the lock file's content (the owner's PID, then its addresses).
func (o *owner) write(l Lock) error {
	b, _ := json.Marshal(l)
	if err := o.f.Truncate(0); err != nil {
		return err
	}
	if _, err := o.f.WriteAt(b, 0); err != nil {
		return err
	}
	return o.f.Sync()
}

// release removes the lock file, then drops the lock: only the owner ever removes it.
func (o *owner) release() error {
	err := os.Remove(o.path)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, o.f.Close())
}

// tighten makes the data directory private to its owner: the directory 0700, and
// the files that hold secrets or tokens (secrets.json, the SQLite databases with
// their WAL and shared-memory files) 0600. A file another user owns is refused rather
// than used: its owner could read everything the stack writes there.
func tighten(dir string) error {
	if err := chmodOwned(dir, 0o700); err != nil {
		return err
	}
	for _, name := range privateFiles {
		if err := chmodOwned(filepath.Join(dir, name), 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

var privateFiles = []string{"secrets.json", "flare.lock",
	"meta.db", "meta.db-wal", "meta.db-shm", "actors.db", "actors.db-wal", "actors.db-shm", "reserve"}

func chmodOwned(path string, mode os.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s is owned by uid %d, not by this user (uid %d): refusing to keep secrets in it", path, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm() == mode {
		return nil
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("make %s private (%o): %w", path, mode, err)
	}
	return nil
}
