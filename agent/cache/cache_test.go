package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

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
