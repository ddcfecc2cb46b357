package edge

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// validExecID is the contract's id shape for URL paths and Idempotency-Key.
var execIDChars = pattern.NewSet("A-Za-z0-9:_-")

// ValidExecutionID reports whether id may name an execution.
func ValidExecutionID(id string) bool { return execIDChars.Run(id, 3, 128) }

// SemanticID is {run}:{owner_repo}:{sha12}, the id Action and webhook modes share.
func SemanticID(run, repo, sha string) string {
	if len(sha) > 12 {
		sha = sha[:12]
	}
	return run + ":" + strings.ReplaceAll(repo, "/", "_") + ":" + sha
}

// SandboxID makes a preview-safe sandbox id from a key such as run:repo:sha12:
// lower-case, [a-z0-9-] only, dashes collapsed; over 40 characters it keeps the first
// 18 and last 12 with an 8-hex FNV-1a digest of the whole key between (contract §6.2).
func SandboxID(key string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(key) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) <= 40 {
		return s
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return strings.TrimRight(s[:18], "-") + "-" + strings.TrimLeft(s[len(s)-12:], "-") + "-" + fmt.Sprintf("%08x", h.Sum32())
}
