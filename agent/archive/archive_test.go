package archive_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
