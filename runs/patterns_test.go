package runs

import (
	"regexp"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern/patterntest"
)

// The runs' shapes were regexps; the hand-written checks must accept exactly what those
// accepted, and stripANSI remove exactly what the regexp removed.
func TestShapesAgreeWithTheRegexpsTheyReplaced(t *testing.T) {
	patterntest.SameAsRegexp(t, `^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`, ownerSlashName, "a./-", 6, 3000)
	ansi := regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)
	for _, s := range []string{"plain", "\x1b[31mred\x1b[0m", "\x1b[", "\x1b[1;2?", "\x1b[1;2?m", "a\x1b[\x1b[2Kb", "\x1b]x", "\x1b\x1b[1mX"} {
		if got, want := stripANSI(s), ansi.ReplaceAllString(s, ""); got != want {
			t.Errorf("stripANSI(%q) = %q, the regexp gives %q", s, got, want)
		}
	}
	patterntest.SameAsRegexp(t, `^\x1b\[[0-9;?]*[A-Za-z]$`, func(s string) bool { return s != "" && stripANSI(s) == "" }, "\x1b[1;?m", 5, 3000)
}
