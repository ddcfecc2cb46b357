package dsl

import (
	"testing"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern/patterntest"
)

// The run spec's shapes were regexps; the hand-written checks must accept exactly what
// those accepted.
func TestShapesAgreeWithTheRegexpsTheyReplaced(t *testing.T) {
	patterntest.SameAsRegexp(t, `^[a-z0-9]+(?:-[a-z0-9]+)*$`, isKebab, "a1-A", 6, 3000)
	patterntest.SameAsRegexp(t, `^\d+\.\d+\.\d+(?:-[0-9A-Za-z-.]+)?$`, isSemver, "1.-a", 7, 5000, "1.2.3", "1.2.3-rc.1", "1.2.3-", "10.20.30-a-b")
	patterntest.SameAsRegexp(t, `^[A-Za-z_][A-Za-z0-9_]*$`, IsEnvName, "a_1-", 5, 2000)
}
