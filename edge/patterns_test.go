package edge

import (
	"regexp"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern/patterntest"
)

// The edge's shapes were regexps; the hand-written checks (internal/pattern, and the
// few below) must accept exactly what those accepted.
func TestShapesAgreeWithTheRegexpsTheyReplaced(t *testing.T) {
	same := patterntest.SameAsRegexp
	same(t, `^[A-Za-z0-9:_-]{3,128}$`, ValidExecutionID, "a:_-.", 5, 3000, strings.Repeat("a", 128), strings.Repeat("a", 129))
	same(t, `^[^@\s]+@[^@\s]+\.[^@\s]+$`, validEmail, "a@. \t", 6, 5000, "a@b.c", "a@b.", "a@.b", "@b.c", "a@b@c.d")
	same(t, `^exec(-[A-Za-z0-9_]+)?\.ndjson$`, validLogFile, "a-_.", 3, 3000, "exec.ndjson", "exec-.ndjson", "exec-a_1.ndjson", "exec-a.ndjson.1", "exec", "-", ".ndjson")

	seg := regexp.MustCompile(`^(.+\.ndjson)(?:\.(\d+))?$`)
	for _, k := range []string{"exec.ndjson", "exec.ndjson.3", "exec.ndjson.12", ".ndjson", ".ndjson.1", "a.ndjson.x",
		"a.ndjson.", "a.ndjson.ndjson", "a.ndjson.ndjson.7", "a/b.ndjson.2", "a\nb.ndjson", "a.ndjson.1.2", "x.ndjson.01"} {
		file, n, ok := splitSegmentKey(k)
		m := seg.FindStringSubmatch(k)
		if ok != (m != nil) || ok && (file != m[1] || n != m[2]) {
			t.Errorf("splitSegmentKey(%q) = %q, %q, %v; the regexp says %q", k, file, n, ok, m)
		}
	}
	patterntest.SameAsRegexp(t, `^(.+\.ndjson)(?:\.(\d+))?$`, func(k string) bool { _, _, ok := splitSegmentKey(k); return ok },
		"a.1", 4, 3000, ".ndjson", "\n")
}
