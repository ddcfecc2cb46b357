package ci

import "testing"

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "0": false, "true": true, "1": true} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}

// recorder catches Fatalf and Skipf without stopping the test that uses it.
type recorder struct {
	testing.TB
	fatal, skipped bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.fatal = true }
func (r *recorder) Skipf(string, ...any)  { r.skipped = true }

func TestSkipFailsInCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	Tool(r, "no-such-tool-flare-dispatch")
	if !r.fatal || r.skipped {
		t.Fatalf("in CI a missing tool must fail, not skip: fatal=%v skipped=%v", r.fatal, r.skipped)
	}
}

func TestSkipSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	Skip(r, "why")
	if r.fatal || !r.skipped {
		t.Fatalf("outside CI Skip must skip: fatal=%v skipped=%v", r.fatal, r.skipped)
	}
}
