package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPrefetchStagesTheNewestArchiveAndAdoptPutsItWhereRestoreWould: Prefetch of a
// family extracts its newest archive beside the paths without touching them (the
// checkout is still running), and Adopt then leaves the paths as Restore would have:
// the image's layer merged over, anything else replaced (a stale file gone, Go's
// read-only module cache whole), every file newer than the checkout that came between
// (Cargo), and nothing staged left behind. Drop removes a
// prefetch nobody adopted; a family with no archive, a cache without a Stage and a
// corrupt archive prefetch nothing and leave nothing. Fails if Prefetch picks any but
// the newest archive, or writes into the paths, or if Adopt removes the layer or keeps
// the extraction's time.
func TestPrefetchStagesTheNewestArchiveAndAdoptPutsItWhereRestoreWould(t *testing.T) {
	c, store, _ := newCache(t, true)
	cs := &clockStore{Store: store, now: time.Unix(1_800_000_000, 0), written: map[string]time.Time{}}
	c.Store = cs
	ctx := context.Background()
	layer := func(dir string) {
		write(t, filepath.Join(dir, "0a", "0a11-a"), "std index", 0o644)
		write(t, filepath.Join(dir, ".flare-image"), "0a/0a11-a\n", 0o644)
	}

	// Two runs of the default branch saved; the second is the newest.
	src := t.TempDir()
	gocache, gomod := filepath.Join(src, ".cache", "go-build"), filepath.Join(src, "go", "pkg", "mod")
	for _, run := range []string{"older", "newest"} {
		os.RemoveAll(src)
		layer(gocache)
		write(t, filepath.Join(gocache, "0c", "0c33-d"), run+" package", 0o644)
		write(t, filepath.Join(gomod, "cache", "download", "x.zip"), run+" zip", 0o444)
		os.Chmod(filepath.Join(gomod, "cache", "download"), 0o555) // Go's read-only module cache
		if _, err := c.Save(ctx, "tc-go-go1.26.8-"+run, []string{gocache, gomod}); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(gomod, "cache", "download"), 0o755)
	}

	// A fresh sandbox: the image's layer, a stale module cache in the way.
	ws := t.TempDir()
	c.Stage = filepath.Join(ws, ".cache", "flare-prefetch")
	gocache, gomod = filepath.Join(ws, ".cache", "go-build"), filepath.Join(ws, "go", "pkg", "mod")
	layer(gocache)
	write(t, filepath.Join(gomod, "stale"), "stale", 0o644)

	p, err := c.Prefetch(ctx, "tc-go-")
	if err != nil || p == nil || p.Key() != "tc-go-go1.26.8-newest" {
		t.Fatalf("prefetch %v %v, want the newest archive", p, err)
	}
	if _, err := os.Stat(filepath.Join(gocache, "0c")); err == nil {
		t.Fatal("prefetch wrote into the paths before it was adopted")
	}
	// The checkout writes its sources after the prefetch, before the adoption.
	time.Sleep(20 * time.Millisecond)
	write(t, filepath.Join(ws, "app", "main.go"), "package main\n", 0o644)
	source, _ := os.Stat(filepath.Join(ws, "app", "main.go"))
	res, err := p.Adopt(ctx, []string{gocache, gomod})
	if err != nil || !res.Hit || !res.Prefetched || res.Files != 2 || res.Key != "tc-go-go1.26.8-newest" {
		t.Fatalf("adopt %+v %v", res, err)
	}
	for name, want := range map[string]string{
		".cache/go-build/0a/0a11-a":       "std index", // the layer stays
		".cache/go-build/0c/0c33-d":       "newest package",
		"go/pkg/mod/cache/download/x.zip": "newest zip",
		".cache/go-build/.flare-image":    "0a/0a11-a\n",
	} {
		if b, err := os.ReadFile(filepath.Join(ws, name)); err != nil || string(b) != want {
			t.Errorf("%s after adopting: %q %v, want %q", name, b, err, want)
		}
	}
	// Cargo rebuilds an output older than its sources: nothing adopted may be.
	for _, name := range []string{".cache/go-build/0c/0c33-d", "go/pkg/mod/cache/download/x.zip"} {
		if st, err := os.Stat(filepath.Join(ws, name)); err != nil || st.ModTime().Before(source.ModTime()) {
			t.Errorf("%s is older than the checkout's sources: %v %v", name, st.ModTime(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(gomod, "stale")); err == nil {
		t.Error("the module cache was merged into, not replaced")
	}
	if st, err := os.Stat(filepath.Join(gomod, "cache", "download")); err != nil || st.Mode().Perm() != 0o555 {
		t.Errorf("the module cache's read-only directory: %v %v", st, err)
	}
	empty := func(what string) {
		t.Helper()
		if _, err := os.Stat(c.Stage); !os.IsNotExist(err) {
			left, _ := os.ReadDir(c.Stage)
			t.Fatalf("%s: the staging directory is still there (%d entries): %v", what, len(left), err)
		}
	}
	empty("after adopting")

	p, err = c.Prefetch(ctx, "tc-go-")
	if err != nil || p == nil {
		t.Fatalf("prefetch %v %v", p, err)
	}
	p.Drop()
	empty("after a drop")

	if p, err := c.Prefetch(ctx, "tc-cargo-"); err != nil || p != nil {
		t.Fatalf("a family with no archive: %v %v", p, err)
	}
	store.PutBytes(ctx, "cache/acme/app/tc-uv-broken.tar.zst", []byte("not zstd at all"), "")
	cs.written["cache/acme/app/tc-uv-broken.tar.zst"] = cs.now
	if p, err := c.Prefetch(ctx, "tc-uv-"); err != nil || p != nil {
		t.Fatalf("a corrupt archive: %v %v", p, err)
	}
	empty("after a corrupt archive")
	if _, err := c.Prefetch(ctx, "../x"); err == nil {
		t.Fatal("a prefix outside the key alphabet was accepted")
	}
	c.Stage = ""
	if p, err := c.Prefetch(ctx, "tc-go-"); err != nil || p != nil {
		t.Fatalf("no Stage: %v %v", p, err)
	}
}
