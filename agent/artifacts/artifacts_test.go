package artifacts_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/agent/artifacts"
	"github.com/flare-dispatch/flare-dispatch/agent/blobstore"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

func TestUploadFileDirectoryTreeAndList(t *testing.T) {
	s3 := s3test.Start(t)
	id, secret := s3.Credential(t, "exec-1", "acme/app")
	store, _ := blobstore.New(blobstore.Config{Endpoint: s3.URL, Bucket: s3.Bucket, AccessKeyID: id, Secret: secret})
	a := &artifacts.Artifacts{Store: store, Exec: "exec-1", Origin: "https://edge.test/"}
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "step.log"), []byte("log line\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "report", "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "report", "index.html"), []byte("<h1>r</h1>"), 0o644)
	os.WriteFile(filepath.Join(dir, "report", "data", "run.sh"), []byte("#!/bin/sh\n"), 0o755)

	f, err := a.Upload(ctx, "step.log", filepath.Join(dir, "step.log"), "")
	if err != nil || f.URL != "https://edge.test/v1/artifacts/exec-1/step.log" || f.Size != 9 || f.ContentType != "text/plain; charset=utf-8" {
		t.Fatalf("%+v %v", f, err)
	}
	d, err := a.Upload(ctx, "report", filepath.Join(dir, "report"), "")
	if err != nil || !d.Dir || d.Files != 2 || d.URL != "https://edge.test/v1/artifacts/exec-1/report/" {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := a.UploadTree(ctx, "writeback", []dsl.TreeEntry{{Path: "manifest.json", Data: []byte(`{"entries":[]}`)}}); err != nil {
		t.Fatal(err)
	}
	keys := s3.Keys(t, "artifacts/exec-1/")
	sort.Strings(keys)
	want := "artifacts/exec-1/report,artifacts/exec-1/report/data/run.sh,artifacts/exec-1/report/index.html,artifacts/exec-1/step.log,artifacts/exec-1/writeback,artifacts/exec-1/writeback/manifest.json"
	if strings.Join(keys, ",") != want {
		t.Fatalf("keys %v", keys)
	}
	// The tarball holds the directory under its name, modes kept.
	zr, err := gzip.NewReader(strings.NewReader(s3.Get(t, "artifacts/exec-1/report")))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		names = append(names, h.Name)
		if h.Name == "report/data/run.sh" && h.Mode != 0o755 {
			t.Fatalf("mode %o", h.Mode)
		}
	}
	if strings.Join(names, ",") != "report/data/run.sh,report/index.html" {
		t.Fatalf("tarball %v", names)
	}
	list, err := a.List(ctx)
	if err != nil || len(list) != 3 || list[0].Name != "report" || !list[0].Dir || list[0].Files != 2 || list[1].Name != "step.log" || list[1].Dir {
		t.Fatalf("%+v %v", list, err)
	}
	var af *dsl.ArtifactUploadFailed
	for _, bad := range []string{"", "..", "a/b", "a b"} {
		if _, err := a.Upload(ctx, bad, filepath.Join(dir, "step.log"), ""); !errors.As(err, &af) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	if _, err := a.UploadTree(ctx, "x", []dsl.TreeEntry{{Path: "../up", Data: []byte("x")}}); !errors.As(err, &af) {
		t.Fatal(err)
	}
}
