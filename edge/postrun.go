package edge

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// afterProgress is what the edge does with an execution's progress beyond projecting
// it, and what it adds to the check-run: fan-out upkeep (children.go); for a child,
// no check-run of its own (its parent's check shows the children); and once the run
// succeeded, the run's own summary (output.summaryMd) and the writeback outcome.
func (s *Server) afterProgress(ctx context.Context, ex Execution, p Params, pr actors.Progress, report *CheckReport) {
	s.childProgress(ctx, ex, pr)
	if ex.Parent != "" {
		report.Install = 0
	}
	if pr.Status != actors.StatusSuccess {
		return
	}
	if md := RunSummary(pr.Output); md != "" {
		report.Summary += "\n\n" + md
	}
	if line := s.writebackLine(ctx, ex, p); line != "" {
		report.Summary += "\n\n" + line
	}
}

// RunSummary is the markdown a run put in its output as "summaryMd" (a string), or "".
func RunSummary(output json.RawMessage) string {
	var o struct {
		SummaryMd string `json:"summaryMd"`
	}
	if len(output) == 0 || json.Unmarshal(output, &o) != nil {
		return ""
	}
	return strings.TrimSpace(o.SummaryMd)
}

// CacheWritable says whether an execution's agent may write its repository's cache
// (cache/<repo>/), given the repository's default branch ("" when the edge cannot tell:
// no GitHub App installation). A pull request's execution may only read it — code from
// a pull request could otherwise plant files in the dependencies and build caches that
// the default branch's runs restore — and so may a push to any other branch, for the
// same reason. Without a known default branch every execution but a pull request's
// writes, as before the App was installed.
func CacheWritable(p Params, defaultBranch string) bool {
	if p.PRNumber != 0 {
		return false
	}
	if defaultBranch == "" {
		return true
	}
	return strings.TrimPrefix(p.Ref, "refs/heads/") == defaultBranch
}

// cacheWritable is CacheWritable with the default branch looked up through the GitHub
// App when the execution has an installation. A failed lookup grants read only: the
// credential is the guard (the agent runs the repository's code), so it fails closed.
func (s *Server) cacheWritable(ctx context.Context, p Params) bool {
	if p.PRNumber != 0 || p.InstallationID == 0 || s.GitHub == nil {
		return CacheWritable(p, "")
	}
	// Remembered for a while in the KV: every agent start would otherwise spend a
	// GitHub call of the installation's hourly budget on a value that rarely changes.
	kvKey := "default-branch/" + p.Repo
	if b, ok, err := s.KV.Get(ctx, kvKey); err == nil && ok && b != "" {
		return CacheWritable(p, b)
	}
	info, err := s.GitHub.Repository(ctx, p.InstallationID, p.Repo)
	if err != nil || info.DefaultBranch == "" {
		s.Log.Warn("default branch unknown: the cache is read-only for this execution", "execution", p.Exec, "repo", p.Repo, "err", err)
		return false
	}
	_ = s.KV.Put(ctx, kvKey, info.DefaultBranch, defaultBranchTTL)
	return CacheWritable(p, info.DefaultBranch)
}

// defaultBranchTTL is how long the edge trusts a looked-up default branch: a renamed
// default branch takes this long to get cache writes.
const defaultBranchTTL = 10 * time.Minute
