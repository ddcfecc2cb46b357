package edge

import (
	"fmt"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// CheckName is the check-run name of a run.
func CheckName(run string) string { return checkRunPrefix + run }

// checkRunPrefix starts the name of every check-run this deploy writes.
const checkRunPrefix = "flare-dispatch/"

// RenderCheck turns a run's progress into the check-run text of the contract (§4.12,
// §6.1). The failure markdown comes from dsl.Markdown, the one renderer of typed errors.
func RenderCheck(run string, p actors.Progress, logLink string) CheckReport {
	links := fmt.Sprintf("\n\n[View logs ↗](%s)", logLink)
	r := CheckReport{Name: CheckName(run), Status: "in_progress", DetailsURL: logLink}
	switch p.Status {
	case actors.StatusQueued:
		r.Title = "Queued"
		r.Summary = fmt.Sprintf("Execution `%s` started.", p.Exec)
		if q := p.Queue; q != nil {
			r.Summary = QueuedText(*q)
		}
	case actors.StatusAdmitted, actors.StatusLeased:
		r.Title = "Starting"
		r.Summary = fmt.Sprintf("Execution `%s` started.", p.Exec) + links
	case actors.StatusRunning:
		r.Title = "Running"
		r.Summary = fmt.Sprintf("Execution `%s` started.", p.Exec) + links
		if p.Attempt > 1 {
			r.Summary += fmt.Sprintf("\n\nAgent restarted: attempt %d.", p.Attempt)
		}
	case actors.StatusWaiting:
		r.Title = "Waiting"
		r.Summary = fmt.Sprintf("Execution `%s` is waiting (for time to pass, child executions or an event) and holds no sandbox slot.", p.Exec) + links
	case actors.StatusSuccess:
		r.Status, r.Conclusion, r.Title = "completed", "success", "Succeeded"
		r.Summary = fmt.Sprintf("✓ %s — execution succeeded.", run) + links
	default:
		if f := p.Failure; f != nil && f.Tag == dsl.TagRunSkipped {
			// The run decided there was nothing to do: neutral, not red (contract §4.12 [fork]).
			r.Status, r.Conclusion, r.Title = "completed", "neutral", "Skipped"
			r.Summary = fmt.Sprintf("⊘ %s — %s.", run, strings.TrimSuffix(f.Message, ".")) + links
			return r
		}
		r.Status, r.Conclusion, r.Title = "completed", "failure", "Failed"
		switch p.Status {
		case actors.StatusCancelled:
			r.Conclusion, r.Title = "cancelled", "Cancelled"
		case actors.StatusTimedOut:
			r.Conclusion, r.Title = "timed_out", "Timed out"
		}
		r.Summary = fmt.Sprintf("✗ %s — execution failed.", run) + links
		if f := p.Failure; f != nil {
			r.Summary += "\n\n" + dsl.Markdown(*toWire(f))
		}
	}
	return r
}

// QueuedText is the queue-position line (contract §6.1).
func QueuedText(q actors.QueueInfo) string {
	runs := "runs"
	if q.Position == 1 {
		runs = "run"
	}
	return fmt.Sprintf("Queued — waiting for a sandbox slot behind %d %s (%d/%d in use); times out %s UTC",
		q.Position, runs, q.Busy, q.Cap, q.Deadline.UTC().Format("15:04"))
}
