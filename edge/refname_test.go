package edge

import (
	"strings"
	"testing"
)

// The cases of git check-ref-format --allow-onelevel (git's t1402), plus commit ids.
func TestValidRefNameFollowsGitCheckRefFormat(t *testing.T) {
	for _, ok := range []string{"0123456789abcdef0123456789abcdef01234567", strings.Repeat("ab", 32), "main", "refs/heads/main",
		"refs/heads/feature/x-1.2", "v1.2.3", "foo.bar", "heads/foo@bar", "refs/pull/5/merge", "a_b"} {
		if !ValidRefName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "a..b", "ma\x00in", "ma\x1bin", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", `a\b`,
		"/a", "a/", "a//b", "a.", ".a", "a/.b", "a.lock", "refs/heads/x.lock/y", "a@{1}", "@", strings.Repeat("a", 256), "a\x7f"} {
		if ValidRefName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDefaultExecutionIDIsValidAndDistinct(t *testing.T) {
	sha := "0123456789abcdef0123456789abcdef01234567"
	// The contract's semantic id where it is valid: Action and webhook modes share it.
	if got := DefaultExecutionID("offload-test", "acme/app", sha); got != "offload-test:acme_app:0123456789ab" {
		t.Fatalf("semantic id changed: %q", got)
	}
	seen := map[string]string{}
	for _, target := range [][2]string{
		{"acme/app", sha}, {"vercel/next.js", sha}, {"vercel/next-js", sha}, {"vercel/next_js", sha}, {"a/b_c.d", sha},
		{"a/b.c_d", sha}, {"a/b-c.d", sha}, {"a/.github", sha}, {"a/-github", sha}, {"Acme/App", sha},
		{strings.Repeat("o", 39) + "/" + strings.Repeat("r", 100), sha}, {strings.Repeat("o", 39) + "/" + strings.Repeat("r", 99) + "s", sha},
		{"acme/app", "refs/heads/a_b"}, {"acme/app", "refs/heads/a/b"}, {"acme/app", "main"}, {"acme/app", "v1.2"}, {"acme/app", "v1-2"},
		{"acme/app", "feature-branch-1"}, {"acme/app", "feature-branch-2"},
	} {
		id := DefaultExecutionID("offload-test", target[0], target[1])
		if !ValidExecutionID(id) {
			t.Errorf("%v: %q is not a valid execution id", target, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%v and %s share %q", target, other, id)
		}
		seen[id] = target[0] + "@" + target[1]
	}
}
