package archive_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/archive"
)

type entry struct {
	name, link, body string
	typ              byte
}

func tarOf(entries ...entry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		tw.WriteHeader(h)
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return b.Bytes()
}

// outsideTouched reports whether anything appeared next to the target directory.
func extractInto(t *testing.T, data []byte) (target, outside string, err error) {
	base := t.TempDir()
	target, outside = filepath.Join(base, "target"), filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o755)
	_, err = archive.Extract(bytes.NewReader(data), func(top string) string {
		if top == "0" {
			return target
		}
		return ""
	})
	return target, outside, err
}

func entriesIn(dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		if p != dir {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	return out
}

func TestExtractStaysInside(t *testing.T) {
	for name, data := range map[string][]byte{
		"dot-dot":         tarOf(entry{name: "0/../../outside/x", typ: tar.TypeReg, body: "x"}),
		"absolute":        tarOf(entry{name: "/0/../outside/y", typ: tar.TypeReg, body: "y"}),
		"escaping link":   tarOf(entry{name: "0/l", link: "../outside", typ: tar.TypeSymlink}, entry{name: "0/l/z", typ: tar.TypeReg, body: "z"}),
		"absolute link":   tarOf(entry{name: "0/l", link: "/tmp", typ: tar.TypeSymlink}),
		"unknown top":     tarOf(entry{name: "9/x", typ: tar.TypeReg, body: "x"}),
		"hard link":       tarOf(entry{name: "0/h", link: "/etc/passwd", typ: tar.TypeLink}),
		"file over a dir": tarOf(entry{name: "0/d/", typ: tar.TypeDir}, entry{name: "0/d/f", typ: tar.TypeReg, body: "f"}, entry{name: "0/d", typ: tar.TypeReg, body: "d"}),
	} {
		t.Run(name, func(t *testing.T) {
			_, outside, _ := extractInto(t, data)
			if got := entriesIn(outside); len(got) != 0 {
				t.Fatalf("wrote outside the target: %v", got)
			}
		})
	}
	target, _, err := extractInto(t, tarOf(entry{name: "0/a/b", typ: tar.TypeReg, body: "b"}, entry{name: "0/a/l", link: "b", typ: tar.TypeSymlink}))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(target, "a", "l")); string(b) != "b" {
		t.Fatalf("inside link: %q", b)
	}
}

func FuzzExtractStaysInside(f *testing.F) {
	f.Add(tarOf(entry{name: "0/../../outside/x", typ: tar.TypeReg, body: "x"}))
	f.Add(tarOf(entry{name: "0/l", link: "../outside", typ: tar.TypeSymlink}, entry{name: "0/l/z", typ: tar.TypeReg, body: "z"}))
	f.Add(tarOf(entry{name: "0/a/", typ: tar.TypeDir}, entry{name: "0/a/l", link: "..", typ: tar.TypeSymlink}, entry{name: "0/a/l/l2", link: "../..", typ: tar.TypeSymlink}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, outside, _ := extractInto(t, data)
		if got := entriesIn(outside); len(got) != 0 {
			t.Fatalf("wrote outside the target: %v", got)
		}
	})
}

// slowReader pauses once, after the first half of its data: a stream from the blob
// store that arrives in bursts, as a restore's does.
type slowReader struct {
	data   []byte
	off    int
	paused bool
	pause  time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	end := len(r.data)
	if !r.paused {
		if r.off >= len(r.data)/2 {
			r.paused = true
			time.Sleep(r.pause) // the input's own delay, not synchronisation
		} else {
			end = len(r.data) / 2
		}
	}
	n := copy(p, r.data[r.off:end])
	r.off += n
	return n, nil
}

// A restored cache must not contain a file newer than another: Cargo recompiles a unit
// whose dependency's output is newer than its own (its integration test after its lib
// landed later in the restore), and did so on every warm run in a fresh sandbox
// (BENCHMARKS.md, "Warm caches in a cold sandbox", 2026-12-04 18:40). Extract gives
// every file the extraction's start as its time, newer than anything written before it
// (the checkout). Without that, the files written after the pause are ≥ 50 ms newer
// than those before it and this test fails.
func TestExtractGivesEveryFileOneTimeAfterWhatCameBefore(t *testing.T) {
	var entries []entry
	for i := range 40 {
		entries = append(entries, entry{name: fmt.Sprintf("0/deps/f%02d", i), body: strings.Repeat("x", 1000*i), typ: tar.TypeReg})
		if i == 30 { // a large file, written inline rather than by the workers
			entries = append(entries, entry{name: "0/deps/large.rlib", body: strings.Repeat("y", 3<<20), typ: tar.TypeReg})
		}
	}
	data := tarOf(entries...)
	base := t.TempDir()
	source := filepath.Join(base, "src.rs") // the checkout, written before the restore
	if err := os.WriteFile(source, []byte("fn main() {}"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, _ := os.Stat(source)
	target := filepath.Join(base, "target")
	st, err := archive.Extract(&slowReader{data: data, pause: 50 * time.Millisecond}, func(string) string { return target })
	if err != nil || st.Files != 41 {
		t.Fatalf("extract: %+v %v", st, err)
	}
	var first time.Time
	err = filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if first.IsZero() {
			first = info.ModTime()
		}
		if !info.ModTime().Equal(first) {
			t.Errorf("%s: modified at %v, another restored file at %v", p, info.ModTime(), first)
		}
		if info.ModTime().Before(src.ModTime()) {
			t.Errorf("%s: modified at %v, before the checkout's %v", p, info.ModTime(), src.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
