// Package patterntest checks a hand-written matcher against the regexp it replaced, on
// every short string over an alphabet and on random longer ones.
package patterntest

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// SameAsRegexp fails t for each input on which match and the regexp re disagree. It
// tries every string over alphabet up to exhaustive characters long, then n random
// strings up to 3×max(long) characters, drawn from alphabet and extra (whole
// strings: prefixes, near-misses).
func SameAsRegexp(t *testing.T, re string, match func(string) bool, alphabet string, exhaustive, n int, extra ...string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	bad := 0
	check := func(s string) {
		if got, want := match(s), rx.MatchString(s); got != want && bad < 10 {
			bad++
			t.Errorf("%s on %q: got %v, the regexp says %v", re, s, got, want)
		}
	}
	for _, s := range extra {
		check(s)
	}
	letters := strings.Split(alphabet, "")
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		check(prefix)
		if depth == 0 {
			return
		}
		for _, l := range letters {
			walk(prefix+l, depth-1)
		}
	}
	walk("", exhaustive)
	pieces := append(letters, extra...)
	r := rand.New(rand.NewPCG(1, 2))
	for range n {
		var b strings.Builder
		for k := r.IntN(12); k >= 0; k-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		check(b.String())
	}
}
