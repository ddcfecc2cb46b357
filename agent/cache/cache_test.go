package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/blobstore"
	"github.com/flare-dispatch/flare-dispatch/agent/cache"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

const execID, repo = "exec-1", "acme/app"

func newCache(t *testing.T, writable bool) (*cache.Cache, *blobstore.Store, *s3test.Store) {
	t.Helper()
	s3 := s3test.Start(t)
	id, secret := s3.CredentialWith(t, execID, repo, writable)
	store, err := blobstore.New(blobstore.Config{Endpoint: s3.URL, Bucket: s3.Bucket, AccessKeyID: id, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return &cache.Cache{Store: store, Prefix: "cache/" + repo + "/", Writable: writable}, store, s3
}

func write(t *testing.T, p, body string, mode os.FileMode) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func TestSaveAndRestoreRoundTrip(t *testing.T) {
	c, _, s3 := newCache(t, true)
	ctx := context.Background()
	root := t.TempDir()
	nm, gomod := filepath.Join(root, "app", "node_modules"), filepath.Join(root, "tools", "gomod")
	write(t, filepath.Join(nm, "is-number", "index.js"), "module.exports = 1\n", 0o644)
	write(t, filepath.Join(nm, "is-number", "cli.js"), "#!/usr/bin/env node\n", 0o755)
	os.MkdirAll(filepath.Join(nm, ".bin"), 0o755)
	os.Symlink("../is-number/cli.js", filepath.Join(nm, ".bin", "is-number"))
	os.MkdirAll(filepath.Join(nm, "empty"), 0o755)
	write(t, filepath.Join(gomod, "cache", "download", "x.zip"), "zip", 0o444)
	os.Chmod(filepath.Join(gomod, "cache", "download"), 0o555) // Go's read-only module cache
	paths := []string{nm, gomod, filepath.Join(root, "absent")}

	saved, err := c.Save(ctx, "npm-abc", paths)
	if err != nil || saved.Files != 3 || saved.Bytes == 0 || saved.ReadOnly {
		t.Fatalf("save %+v %v", saved, err)
	}
	if keys := s3.Keys(t, "cache/"+repo+"/"); len(keys) != 1 || keys[0] != "cache/acme/app/npm-abc.tar.zst" {
		t.Fatalf("keys %v", keys)
	}
	// The sandbox is gone; a stale tree is in the way.
	os.Chmod(filepath.Join(gomod, "cache", "download"), 0o755)
	os.RemoveAll(root)
	write(t, filepath.Join(nm, "stale.js"), "old", 0o644)

	got, err := c.Restore(ctx, "npm-abc", paths)
	if err != nil || !got.Hit || got.Files != 3 || got.RawBytes != saved.RawBytes {
		t.Fatalf("restore %+v %v", got, err)
	}
	if b, _ := os.ReadFile(filepath.Join(nm, "is-number", "index.js")); string(b) != "module.exports = 1\n" {
		t.Fatalf("content %q", b)
	}
	if st, _ := os.Stat(filepath.Join(nm, "is-number", "cli.js")); st.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v", st.Mode())
	}
	if l, err := os.Readlink(filepath.Join(nm, ".bin", "is-number")); err != nil || l != "../is-number/cli.js" {
		t.Fatalf("symlink %q %v", l, err)
	}
	if st, err := os.Stat(filepath.Join(nm, "empty")); err != nil || !st.IsDir() {
		t.Fatal("empty directory lost")
	}
	if _, err := os.Stat(filepath.Join(nm, "stale.js")); !os.IsNotExist(err) {
		t.Fatal("restore kept a stale file")
	}
	if st, _ := os.Stat(filepath.Join(gomod, "cache", "download")); st.Mode().Perm() != 0o555 {
		t.Fatalf("directory mode %v", st.Mode())
	}
	os.Chmod(filepath.Join(gomod, "cache", "download"), 0o755)

	if miss, err := c.Restore(ctx, "npm-other", paths); err != nil || miss.Hit {
		t.Fatalf("miss %+v %v", miss, err)
	}
}

func TestAPullRequestsCacheIsReadOnly(t *testing.T) {
	c, _, s3 := newCache(t, false)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a"), "a", 0o644)
	res, err := c.Save(context.Background(), "go-1", []string{dir})
	if err != nil || !res.ReadOnly || len(s3.Keys(t, "cache/")) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	// Even when the agent thinks it may write, the store refuses and Save says so.
	c.Writable = true
	res, err = c.Save(context.Background(), "go-1", []string{dir})
	if err != nil || !res.ReadOnly || len(s3.Keys(t, "cache/")) != 0 {
		t.Fatalf("refused by the store: %+v %v", res, err)
	}
}

func TestLargeArchivesGoMultipartAndACorruptOneIsAMiss(t *testing.T) {
	c, store, _ := newCache(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	big := make([]byte, 20<<20) // incompressible: three 8 MiB parts
	rand.Read(big)
	write(t, filepath.Join(dir, "big.bin"), string(big), 0o644)
	if res, err := c.Save(ctx, "big", []string{dir}); err != nil || res.Bytes < 20<<20 {
		t.Fatalf("%+v %v", res, err)
	}
	os.RemoveAll(dir)
	if res, err := c.Restore(ctx, "big", []string{dir}); err != nil || !res.Hit {
		t.Fatalf("%+v %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "big.bin")); !bytes.Equal(b, big) {
		t.Fatal("content differs")
	}
	store.PutBytes(ctx, "cache/acme/app/broken.tar.zst", []byte("not zstd at all"), "")
	write(t, filepath.Join(dir, "half"), "x", 0o644)
	if res, err := c.Restore(ctx, "broken", []string{dir}); err != nil || res.Hit {
		t.Fatalf("corrupt: %+v %v", res, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("a failed restore left files behind")
	}
}

func TestKeysAreChecked(t *testing.T) {
	c, _, _ := newCache(t, true)
	for _, k := range []string{"", "../x", "a/b", "a b"} {
		if _, err := c.Restore(context.Background(), k, nil); err == nil {
			t.Errorf("key %q accepted", k)
		}
	}
}

// TestRestoreFallbackTakesTheSameToolchainsNewestArchive: a lockfile never seen before
// restores the archive of the same toolchain version (another lockfile's), never another
// version's, and says which key it came from (dsl.WarmCaches saves under the new key
// when FromKey is set).
func TestRestoreFallbackTakesTheSameToolchainsNewestArchive(t *testing.T) {
	c, _, _ := newCache(t, true)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "gocache")
	for key, body := range map[string]string{"tc-go-go1.26.8-aaaa": "built by 1.26.8", "tc-go-go1.25.0-bbbb": "built by 1.25.0"} {
		os.RemoveAll(dir)
		write(t, filepath.Join(dir, "obj"), body, 0o644)
		if _, err := c.Save(ctx, key, []string{dir}); err != nil {
			t.Fatal(err)
		}
	}
	os.RemoveAll(dir)
	got, err := c.RestoreFallback(ctx, "tc-go-go1.26.8-cccc", []string{"tc-go-go1.26.8-"}, []string{dir})
	if err != nil || !got.Hit || got.Key != "tc-go-go1.26.8-cccc" || got.FromKey != "tc-go-go1.26.8-aaaa" {
		t.Fatalf("fallback %+v %v", got, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "obj")); string(b) != "built by 1.26.8" {
		t.Fatalf("restored %q", b)
	}
	if got, err := c.RestoreFallback(ctx, "tc-go-go1.27.0-dddd", []string{"tc-go-go1.27.0-"}, []string{dir}); err != nil || got.Hit {
		t.Fatalf("another toolchain version restored %+v %v", got, err)
	}
	if got, err := c.RestoreFallback(ctx, "tc-go-go1.25.0-bbbb", []string{"tc-go-go1.25.0-"}, []string{dir}); err != nil || !got.Hit || got.FromKey != "" {
		t.Fatalf("exact key %+v %v", got, err)
	}
	if _, err := c.RestoreFallback(ctx, "k", []string{"../x"}, []string{dir}); err == nil {
		t.Fatal("a fallback prefix outside the key alphabet was accepted")
	}
}

// TestAnImageLayerIsMergedOverAndNotSaved: a directory the image pre-built (a Go image's
// GOCACHE with its .flare-image manifest) is saved as the entries a run added only, and
// restored by merging over the layer a fresh sandbox starts with. Fails without the
// manifest's skip in Save (the archive holds the layer's entries: 3 files, not 1) and
// without the merge in Restore (the layer's entries are removed).
func TestAnImageLayerIsMergedOverAndNotSaved(t *testing.T) {
	c, _, _ := newCache(t, true)
	ctx := context.Background()
	layer := func(dir string) {
		write(t, filepath.Join(dir, "0a", "0a11-a"), "std index", 0o644)
		write(t, filepath.Join(dir, "0b", "0b22-d"), "std output", 0o644)
		write(t, filepath.Join(dir, ".flare-image"), "0a/0a11-a\n0b/0b22-d\n", 0o644)
	}
	gocache := filepath.Join(t.TempDir(), ".cache", "go-build")
	layer(gocache)
	write(t, filepath.Join(gocache, "0c", "0c33-d"), "the run's package", 0o644)

	saved, err := c.Save(ctx, "tc-go", []string{gocache})
	if err != nil || saved.Files != 1 || saved.RawBytes != int64(len("the run's package")) {
		t.Fatalf("save of a layer: %+v %v (want only the run's entry)", saved, err)
	}

	fresh := filepath.Join(t.TempDir(), ".cache", "go-build") // the next sandbox: the image's layer only
	layer(fresh)
	got, err := c.Restore(ctx, "tc-go", []string{fresh})
	if err != nil || !got.Hit || got.Files != 1 {
		t.Fatalf("restore %+v %v", got, err)
	}
	for name, want := range map[string]string{"0a/0a11-a": "std index", "0b/0b22-d": "std output", "0c/0c33-d": "the run's package"} {
		if b, err := os.ReadFile(filepath.Join(fresh, name)); err != nil || string(b) != want {
			t.Errorf("%s after the restore: %q %v", name, b, err)
		}
	}
}

// clockStore is the real store with a virtual clock for LastModified: each Put is one
// minute after the previous, so "newest" does not depend on the store's 1 s resolution.
type clockStore struct {
	*blobstore.Store
	now     time.Time
	written map[string]time.Time
}

func (s *clockStore) Put(ctx context.Context, key string, r io.Reader, ct string) (int64, error) {
	s.now = s.now.Add(time.Minute)
	s.written[key] = s.now
	return s.Store.Put(ctx, key, r, ct)
}

func (s *clockStore) List(ctx context.Context, prefix string) ([]blobstore.Object, error) {
	objs, err := s.Store.List(ctx, prefix)
	for i := range objs {
		objs[i].Modified = s.written[objs[i].Key]
	}
	return objs, err
}

// TestSavesKeepTheNewestArchivesOfEachTool: after a save, a tool's archives beyond the
// newest Keep (across its versions and lockfiles) are deleted; another tool's are not
// counted, and the archive just saved is kept. Fails without the eviction (six Go
// archives stay) or if it counted every tool together (the npm archive goes).
func TestSavesKeepTheNewestArchivesOfEachTool(t *testing.T) {
	c, store, s3 := newCache(t, true)
	cs := &clockStore{Store: store, now: time.Unix(1_800_000_000, 0), written: map[string]time.Time{}}
	c.Store, c.Keep = cs, 2
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "d")
	write(t, filepath.Join(dir, "f"), "x", 0o644)
	for _, key := range []string{"npm-v22-aaaa", "tc-go-go1.25.0-1111", "tc-go-go1.26.8-2222", "tc-go-go1.26.8-3333", "tc-go-go1.26.8-4444"} {
		if _, err := c.Save(ctx, key, []string{dir}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"cache/acme/app/npm-v22-aaaa.tar.zst", "cache/acme/app/tc-go-go1.26.8-3333.tar.zst", "cache/acme/app/tc-go-go1.26.8-4444.tar.zst"}
	if got := s3.Keys(t, "cache/"+repo+"/"); !slices.Equal(got, want) {
		t.Fatalf("kept %v\nwant %v", got, want)
	}
}
