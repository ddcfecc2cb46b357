// Package pattern checks the small fixed shapes the edge validates (names, ids, keys,
// path globs) without regexp: the Worker compiled some thirty regexps at start-up for
// shapes that are a few lines of plain code each (specs/cloudflare.md, Sizes).
package pattern

import (
	"strings"
	"unicode/utf8"
)

// Set is a set of ASCII bytes.
type Set [256]bool

// NewSet builds a Set from a character-class body such as "A-Za-z0-9._-": "x-y" is a
// range, and a '-' first or last stands for itself.
func NewSet(spec string) *Set {
	var s Set
	for i := 0; i < len(spec); i++ {
		if i+2 < len(spec) && spec[i+1] == '-' {
			for c := int(spec[i]); c <= int(spec[i+2]); c++ {
				s[c] = true
			}
			i += 2
			continue
		}
		s[spec[i]] = true
	}
	return &s
}

// Has reports whether b is in the set.
func (s *Set) Has(b byte) bool { return s[b] }

// All reports whether every byte of v is in the set.
func (s *Set) All(v string) bool {
	for i := 0; i < len(v); i++ {
		if !s[v[i]] {
			return false
		}
	}
	return true
}

// Run reports whether v has min to max bytes, each in the set: the regexp ^[set]{min,max}$.
func (s *Set) Run(v string, min, max int) bool {
	return len(v) >= min && len(v) <= max && s.All(v)
}

// Common sets.
var (
	Digits   = NewSet("0-9")
	LowerHex = NewSet("0-9a-f")
	Alnum    = NewSet("A-Za-z0-9")
)

// HexSHA reports whether v is a lower-case hex object name of 7 to 64 digits.
func HexSHA(v string) bool { return LowerHex.Run(v, 7, 64) }

// GitHubOwner reports whether v is a GitHub user or organisation login: an
// alphanumeric, then up to 38 alphanumerics or '-'.
func GitHubOwner(v string) bool {
	return len(v) >= 1 && Alnum.Has(v[0]) && ownerTail.Run(v[1:], 0, 38)
}

// GitHubRepo reports whether v is "owner/name" with a GitHub login as owner and a
// name of 1 to 100 of A-Za-z0-9._-.
func GitHubRepo(v string) bool {
	owner, name, ok := strings.Cut(v, "/")
	return ok && GitHubOwner(owner) && repoChars.Run(name, 1, 100)
}

var (
	ownerTail = NewSet("A-Za-z0-9-")
	repoChars = NewSet("A-Za-z0-9._-")
)

// Glob is an anchored path glob: "*" matches a run of non-'/' characters, "?" one of
// them, "/**" any depth including none, "**/" any leading directories including none,
// and "**" alone anything. No character of a path matches across a newline, as with
// the regexp this replaced.
type Glob struct{ toks []tok }

type tokKind uint8

const (
	lit      tokKind = iota // the rune r
	star                    // [^/]*
	one                     // [^/]
	anything                // .*
	someDirs                // (?:.*/)?
	subtree                 // (?:/.*)?
)

type tok struct {
	kind tokKind
	r    string
}

// CompileGlob parses g. Every string is a valid glob.
func CompileGlob(g string) Glob {
	var toks []tok
	for i := 0; i < len(g); {
		switch {
		case strings.HasPrefix(g[i:], "**/"):
			toks = append(toks, tok{kind: someDirs})
			i += 3
		case strings.HasPrefix(g[i:], "/**") && (i+3 == len(g) || g[i+3] == '/'):
			toks = append(toks, tok{kind: subtree})
			i += 3
			if i < len(g) { // "/**/": the slash after stays
				toks = append(toks, tok{kind: lit, r: "/"})
				i++
			}
		case strings.HasPrefix(g[i:], "**"):
			toks = append(toks, tok{kind: anything})
			i += 2
		case g[i] == '*':
			toks = append(toks, tok{kind: star})
			i++
		case g[i] == '?':
			toks = append(toks, tok{kind: one})
			i++
		default:
			_, n := utf8.DecodeRuneInString(g[i:])
			toks = append(toks, tok{kind: lit, r: g[i : i+n]})
			i += n
		}
	}
	return Glob{toks: toks}
}

// Match reports whether the whole of p matches. It is O(len(glob) × len(p)): each
// (token, position, phase) is decided once, and each decision looks one character on.
func (g Glob) Match(p string) bool {
	m := matcher{toks: g.toks, p: p, memo: make([]int8, 2*(len(g.toks)+1)*(len(p)+1))}
	return m.at(0, 0, false)
}

type matcher struct {
	toks []tok
	p    string
	memo []int8 // 0 unknown, 1 match, 2 no match
}

// at reports whether toks[ti:] matches p[si:]. inside is the second phase of the
// tokens that have one: "**/" past its optional start, "/**" past its slash.
func (m *matcher) at(ti, si int, inside bool) bool {
	k := 2 * (ti*(len(m.p)+1) + si)
	if inside {
		k++
	}
	if m.memo[k] != 0 {
		return m.memo[k] == 1
	}
	ok := m.try(ti, si, inside)
	m.memo[k] = 2
	if ok {
		m.memo[k] = 1
	}
	return ok
}

// next is the index after the character at si, or -1 at the end or at a character the
// token may not cross ('/' for "*" and "?", a newline for "**", as regexp's [^/] and .).
func (m *matcher) next(si int, stop rune) int {
	if si >= len(m.p) {
		return -1
	}
	r, n := utf8.DecodeRuneInString(m.p[si:])
	if r == stop {
		return -1
	}
	return si + n
}

func (m *matcher) slashAt(si int) bool { return si < len(m.p) && m.p[si] == '/' }

func (m *matcher) try(ti, si int, inside bool) bool {
	if ti == len(m.toks) {
		return si == len(m.p)
	}
	t := m.toks[ti]
	switch t.kind {
	case lit:
		return strings.HasPrefix(m.p[si:], t.r) && m.at(ti+1, si+len(t.r), false)
	case one:
		j := m.next(si, '/')
		return j >= 0 && m.at(ti+1, j, false)
	case star, anything:
		stop := '/'
		if t.kind == anything {
			stop = '\n'
		}
		if m.at(ti+1, si, false) {
			return true
		}
		j := m.next(si, stop)
		return j >= 0 && m.at(ti, j, false)
	case someDirs: // (?:.*/)?: nothing, or any characters then a '/'
		if !inside && m.at(ti+1, si, false) {
			return true
		}
		if m.slashAt(si) && m.at(ti+1, si+1, false) {
			return true
		}
		j := m.next(si, '\n')
		return j >= 0 && m.at(ti, j, true)
	case subtree: // (?:/.*)?: nothing, or a '/' then any characters
		if !inside {
			return m.at(ti+1, si, false) || m.slashAt(si) && m.at(ti, si+1, true)
		}
		if m.at(ti+1, si, false) {
			return true
		}
		j := m.next(si, '\n')
		return j >= 0 && m.at(ti, j, true)
	}
	return false
}
