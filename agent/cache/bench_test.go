package cache_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/blobstore"
	"github.com/flare-dispatch/flare-dispatch/agent/cache"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

// BenchmarkCacheTree measures Save (tar → zstd → multipart upload, streamed) and
// Restore (download → zstd → extract, streamed) of the directory FLARE_BENCH_TREE (e.g.
// a node_modules of a few hundred MB; scripts/bench-cache prepares one) against the
// embedded S3 store, and, as the baseline, plain `tar -c | gzip` to a file uploaded
// with the same client, and download to a file then `gzip -dc | tar -x`. It reports
// MB/s of file bytes (the tree's size, not the archive's). FLARE_BENCH_WORK puts the
// restored trees and the baseline's archive elsewhere (a tmpfs, to leave the disk out).
func BenchmarkCacheTree(b *testing.B) {
	tree := os.Getenv("FLARE_BENCH_TREE")
	if tree == "" {
		b.Skip("set FLARE_BENCH_TREE to a directory to archive")
	}
	s3 := s3test.Start(b)
	id, secret := s3.CredentialWith(b, "bench-1", "acme/app", true)
	store, err := blobstore.New(blobstore.Config{Endpoint: s3.URL, Bucket: s3.Bucket, AccessKeyID: id, Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	raw, files := treeSize(b, tree)
	b.Logf("tree %s: %d files, %.1f MB", tree, files, float64(raw)/1e6)
	work := b.TempDir()
	if w := os.Getenv("FLARE_BENCH_WORK"); w != "" { // e.g. /dev/shm: take the disk out of the figures
		work, _ = os.MkdirTemp(w, "flare-bench-")
		defer os.RemoveAll(work)
	}
	ctx := context.Background()
	c := &cache.Cache{Store: store, Prefix: "cache/acme/app/", Writable: true}
	report := func(name string, d time.Duration, archive int64) {
		b.ReportMetric(float64(raw)/1e6/d.Seconds(), strings.NewReplacer(" ", "-", "|", "-").Replace(name)+"-MB/s")
		fmt.Printf("%-22s %7.2f s %7.1f MB/s  archive %7.1f MB\n", name, d.Seconds(), float64(raw)/1e6/d.Seconds(), float64(archive)/1e6)
	}
	for b.Loop() {
		sh(b, "sync") // every phase starts without another's dirty pages to write back
		t0 := time.Now()
		saved, err := c.Save(ctx, "bench", []string{tree})
		if err != nil {
			b.Fatal(err)
		}
		report("zstd save", time.Since(t0), saved.Bytes)
		dst := filepath.Join(work, "restored")
		sh(b, "sync")
		t0 = time.Now()
		if _, err := c.Restore(ctx, "bench", []string{dst}); err != nil {
			b.Fatal(err)
		}
		report("zstd restore", time.Since(t0), saved.Bytes)
		os.RemoveAll(dst)

		// Baseline: tar | gzip to a file, upload; download, gunzip | tar x.
		tgz := filepath.Join(work, "tree.tar.gz")
		sh(b, "sync")
		t0 = time.Now()
		sh(b, fmt.Sprintf("tar -C %q -cf - . | gzip > %q", tree, tgz))
		f, _ := os.Open(tgz)
		n, err := store.Put(ctx, "cache/acme/app/bench.tar.gz", f, "application/gzip")
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		report("tar|gzip save", time.Since(t0), n)
		os.Remove(tgz)
		sh(b, "sync")
		t0 = time.Now()
		body, _, err := store.Get(ctx, "cache/acme/app/bench.tar.gz")
		if err != nil {
			b.Fatal(err)
		}
		out, _ := os.Create(tgz)
		out.ReadFrom(body)
		out.Close()
		body.Close()
		os.MkdirAll(dst, 0o755)
		sh(b, fmt.Sprintf("gzip -dc %q | tar -C %q -xf -", tgz, dst))
		report("tar|gzip restore", time.Since(t0), n)
		os.RemoveAll(dst)
		os.Remove(tgz)
	}
}

func sh(b *testing.B, script string) {
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func treeSize(b *testing.B, dir string) (bytes int64, files int) {
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				bytes += info.Size()
				files++
			}
		}
		return nil
	})
	return bytes, files
}
