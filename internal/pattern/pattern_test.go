package pattern

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern/patterntest"
)

func TestSetRun(t *testing.T) {
	s := NewSet("A-Za-z0-9._-")
	patterntest.SameAsRegexp(t, `^[A-Za-z0-9._-]{1,5}$`, func(v string) bool { return s.Run(v, 1, 5) },
		"aZ9._-/ @é", 4, 2000)
}

func TestHexSHAAndGitHubNames(t *testing.T) {
	patterntest.SameAsRegexp(t, `^[0-9a-f]{7,64}$`, HexSHA, "0aF", 8, 2000,
		strings.Repeat("a", 64), strings.Repeat("a", 65), "0123456")
	patterntest.SameAsRegexp(t, `^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`, GitHubOwner, "a-Z.", 5, 2000,
		strings.Repeat("a", 39), strings.Repeat("a", 40), "-a")
	patterntest.SameAsRegexp(t, `^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$`, GitHubRepo, "a-/._", 6, 3000,
		strings.Repeat("a", 39)+"/x", strings.Repeat("a", 40)+"/x", "a/"+strings.Repeat("b", 100), "a/"+strings.Repeat("b", 101), "a/b/c")
}

// oldGlob is the regexp translation the edge used before Glob: Glob must agree with it.
func oldGlob(g string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); {
		switch {
		case strings.HasPrefix(g[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 3
		case strings.HasPrefix(g[i:], "/**") && (i+3 == len(g) || g[i+3] == '/'):
			b.WriteString("(?:/.*)?")
			i += 3
			if i < len(g) {
				i++
				b.WriteString("/")
			}
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(".*")
			i += 2
		case g[i] == '*':
			b.WriteString("[^/]*")
			i++
		case g[i] == '?':
			b.WriteString("[^/]")
			i++
		default:
			r, n := utf8.DecodeRuneInString(g[i:])
			b.WriteString(regexp.QuoteMeta(string(r)))
			i += n
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func TestGlobAgreesWithTheRegexpItReplaced(t *testing.T) {
	cases := []struct {
		glob string
		yes  []string
		no   []string
	}{
		{"docs/**", []string{"docs", "docs/a.md", "docs/a/b/c.md"}, []string{"docsx", "src/docs/a"}},
		{"**/*.go", []string{"a.go", "x/y/a.go"}, []string{"a.go/x", "a.gox"}},
		{"src/*.ts", []string{"src/a.ts"}, []string{"src/a/b.ts", "src/.ts/x"}},
		{"a/**/b", []string{"a/b", "a/x/b", "a/x/y/b"}, []string{"ab", "a/xb"}},
		{"file?.txt", []string{"file1.txt", "fileé.txt"}, []string{"file/.txt", "file12.txt"}},
		{"**", []string{"", "a", "a/b/c"}, []string{"a\nb"}},
	}
	for _, c := range cases {
		g := CompileGlob(c.glob)
		for _, p := range c.yes {
			if !g.Match(p) {
				t.Errorf("%q should match %q", c.glob, p)
			}
		}
		for _, p := range c.no {
			if g.Match(p) {
				t.Errorf("%q should not match %q", c.glob, p)
			}
		}
	}
	// Random globs and paths over a small alphabet, against the old translation.
	r := rand.New(rand.NewPCG(3, 4))
	globPieces := []string{"a", "b", "/", ".", "*", "?", "**", "/**", "**/", "é"}
	pathPieces := []string{"a", "b", "/", ".", "é", "\n"}
	build := func(pieces []string, max int) string {
		var b strings.Builder
		for k := r.IntN(max); k >= 0; k-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	bad := 0
	for range 3000 {
		gs := build(globPieces, 6)
		g, rx := CompileGlob(gs), oldGlob(gs)
		for range 30 {
			p := build(pathPieces, 8)
			if got, want := g.Match(p), rx.MatchString(p); got != want && bad < 10 {
				bad++
				t.Errorf("glob %q on %q: got %v, the regexp says %v", gs, p, got, want)
			}
		}
	}
}

// A glob of many stars against a long path that almost matches stays polynomial.
func TestGlobIsNotExponential(t *testing.T) {
	g := CompileGlob(strings.Repeat("*a", 30) + "b")
	if g.Match(strings.Repeat("a", 5000)) {
		t.Fatal("matched a path without b")
	}
}
