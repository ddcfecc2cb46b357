package edge

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// ValidRefName reports whether s is a ref name git accepts (git check-ref-format
// --allow-onelevel): a commit id (40 or 64 hex digits) is one, and so are main,
// refs/heads/x and v1.2.3. Up to 255 bytes.
func ValidRefName(s string) bool {
	if s == "" || len(s) > 255 || s == "@" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") ||
		strings.HasSuffix(s, ".") || strings.Contains(s, "..") || strings.Contains(s, "//") || strings.Contains(s, "@{") {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return false
		}
	}
	for _, c := range strings.Split(s, "/") {
		if strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".lock") {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// DefaultExecutionID is the id of a dispatch without Idempotency-Key: the contract's
// semantic id {run}:{owner_repo}:{sha12} when that is a valid execution id, so Action
// and webhook modes share executions as in the original. Otherwise (a repository name
// with a dot, a ref in place of a commit id — whose first 12 characters need not tell
// refs apart —, over 128 characters) the characters an id may
// not hold become '-' and a digest of the exact run, repository and sha is appended:
// valid, and distinct for distinct targets (a semantic id has two colons, these three).
func DefaultExecutionID(run, repo, sha string) string {
	id := SemanticID(run, repo, sha)
	if ValidExecutionID(id) && isHex(sha) {
		return id
	}
	h := fnv.New64a()
	h.Write([]byte(run + "\x00" + repo + "\x00" + sha))
	suffix := fmt.Sprintf(":%016x", h.Sum64())
	clean := []byte(id)
	for i, c := range clean {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-') {
			clean[i] = '-'
		}
	}
	if len(clean) > 128-len(suffix) {
		clean = clean[:128-len(suffix)]
	}
	return string(clean) + suffix
}
