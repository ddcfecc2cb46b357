package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/sandbox"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

func TestReadFileAndExists(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	if _, err := sb.Exec(ctx, dsl.ExecRequest{Command: "mkdir -p d && printf 'hi' > d/f.txt"}); err != nil {
		t.Fatal(err)
	}
	if b, err := sb.ReadFile(ctx, "d/f.txt"); err != nil || string(b) != "hi" {
		t.Fatalf("%q %v", b, err)
	}
	var rf *dsl.ReadFileFailed
	if _, err := sb.ReadFile(ctx, "d"); !errors.As(err, &rf) || rf.Message != "is a directory" {
		t.Fatal(err)
	}
	if _, err := sb.ReadFile(ctx, "nope"); !errors.As(err, &rf) {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"d": true, "d/f.txt": true, "nope": false} {
		if got, err := sb.Exists(ctx, p); err != nil || got != want {
			t.Errorf("Exists(%s) = %v %v", p, got, err)
		}
	}
}

func TestDetachedCommandAndItsPort(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p, err := sb.RunDetached(ctx, dsl.ExecRequest{Command: fmt.Sprintf("sleep 0.3; exec /usr/bin/python3 -m http.server %d --bind 127.0.0.1", port)})
	if err != nil || p.ID == "" || !strings.HasSuffix(p.LogURI, "exec.ndjson") {
		t.Fatalf("%+v %v", p, err)
	}
	if err := sb.WaitForPort(ctx, p, port, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if u, err := sb.ExposePort(ctx, port); err != nil || u != fmt.Sprintf("http://127.0.0.1:%d", port) {
		t.Fatalf("%q %v", u, err)
	}
	// A command that exits without listening: PortNeverOpened at once, not after the timeout.
	q, _ := sb.RunDetached(ctx, dsl.ExecRequest{Command: "echo bye; exit 5"})
	start := time.Now()
	var never *dsl.PortNeverOpened
	if err := sb.WaitForPort(ctx, q, port+1, time.Minute); !errors.As(err, &never) || time.Since(start) > 10*time.Second {
		t.Fatalf("%v after %s", err, time.Since(start))
	}
	res, err := sb.WaitForExit(ctx, q)
	if err != nil || res.ExitCode != 5 || !strings.Contains(res.StdoutTail, "bye") {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := sb.WaitForExit(ctx, dsl.Process{ID: "proc-99"}); err == nil {
		t.Fatal("unknown handle accepted")
	}
}

func TestDetachedCommandDiesWithItsContext(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	pidFile := filepath.Join(t.TempDir(), "pid")
	p, err := sb.RunDetached(ctx, dsl.ExecRequest{Command: "echo $$ > " + pidFile + "; sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, _ := os.ReadFile(pidFile); len(b) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid := readPid(t, pidFile)
	cancel()
	waitGone(t, pid)
	if _, err := sb.WaitForExit(context.Background(), p); err == nil {
		t.Fatal("a killed command reported no error")
	}
}

func TestExposePortNeedsPreviewURLsOutsideLocalMode(t *testing.T) {
	sb := newSandbox(t, func(c *sandbox.Config) { c.Local = false })
	var f *dsl.ExposePortFailed
	if _, err := sb.ExposePort(context.Background(), 3000); !errors.As(err, &f) {
		t.Fatal(err)
	}
}

func TestChangesListsWhatTheCommandChanged(t *testing.T) {
	sb := newSandbox(t, nil)
	ctx := context.Background()
	src, shas := gitRepo(t, filepath.Join(t.TempDir(), "src"))
	dir, err := sb.Checkout(ctx, src, shas[1])
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := sb.Changes(ctx, dir); err != nil || len(ch) != 0 {
		t.Fatalf("clean checkout: %+v %v", ch, err)
	}
	cmd := `echo three > VERSION && mkdir -p fixtures/deep && echo x > "fixtures/deep/a b.json" && printf '#!/bin/sh\n' > run.sh && chmod +x run.sh && ln -s VERSION link && echo ignored > skip.log && echo '*.log' > .gitignore`
	if res, err := sb.Exec(ctx, dsl.ExecRequest{Dir: dir, Command: cmd}); err != nil || res.ExitCode != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	ch, err := sb.Changes(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, c := range ch {
		got = append(got, fmt.Sprintf("%s:%s:%v", c.Path, c.Mode, c.Deleted))
	}
	want := ".gitignore:100644:false,VERSION:100644:false,fixtures/deep/a b.json:100644:false,link:120000:false,run.sh:100755:false"
	if strings.Join(got, ",") != want {
		t.Fatalf("changes\n%s\nwant\n%s", strings.Join(got, ","), want)
	}
	if _, err := sb.Exec(ctx, dsl.ExecRequest{Dir: dir, Command: "git checkout -q -- . && git clean -qfdx && rm VERSION"}); err != nil {
		t.Fatal(err)
	}
	if ch, _ := sb.Changes(ctx, dir); len(ch) != 1 || ch[0].Path != "VERSION" || !ch[0].Deleted {
		t.Fatalf("deletion: %+v", ch)
	}
}
