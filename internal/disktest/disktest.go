// Package disktest gives tests a real small filesystem to fill: a full disk is made
// by the kernel (ENOSPC from write, SQLITE_FULL from SQLite), not simulated.
package disktest

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// Small mounts a tmpfs of size (e.g. "24m") under a temporary directory and unmounts
// it at the end. It needs root; without, the test is skipped, or fails under CI=true.
func Small(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a tmpfs (the disk-full test needs root): %v", err)
		}
		t.Skipf("mount a tmpfs (the disk-full test needs root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// Fill writes path until its filesystem has no byte left (or appends to it, when it
// exists, to take what was freed since).
func Fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int{1 << 20, 4 << 10, 1} {
		chunk := make([]byte, n)
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}
