package prreview

import (
	"regexp"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern/patterntest"
)

// The comment's shapes were regexps; the hand-written code must do exactly what those did.
func TestShapesAgreeWithTheRegexpsTheyReplaced(t *testing.T) {
	patterntest.SameAsRegexp(t, `^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`, ownerName, "a./-", 6, 3000)
	mention := regexp.MustCompile(`@([\w-])`)
	lineStarts := regexp.MustCompile(`^(\s*)([-+>=]|\d+[.)])`)
	inputs := []string{"", "@", "@@a", "a@b", "x @-y @ z", "@é", "- item", "  + x", "> q", "= h", "12. x", "3) y", "12x", " 1", "\t-", "a - b"}
	for _, s := range inputs {
		if got, want := unping(s), mention.ReplaceAllString(s, "@\u200b$1"); got != want {
			t.Errorf("unping(%q) = %q, the regexp gives %q", s, got, want)
		}
		if got, want := escapeLineStart(s), lineStarts.ReplaceAllString(s, `$1\$2`); got != want {
			t.Errorf("escapeLineStart(%q) = %q, the regexp gives %q", s, got, want)
		}
	}
}
