package edge

import (
	"context"
	"encoding/json"
	"strings"

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
// (cache/<repo>/): every execution but a pull request's, which may only read it — code
// from a pull request could otherwise plant files in the dependencies that the default
// branch's runs restore.
func CacheWritable(p Params) bool { return p.PRNumber == 0 }
