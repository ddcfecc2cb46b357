package github

import (
	"context"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Checks is the edge.Checks port over the App client: the first report of an
// execution creates its check-run (in_progress), later ones update it.
type Checks struct{ Client *Client }

var _ edge.Checks = Checks{}

// Report implements edge.Checks.
func (c Checks) Report(ctx context.Context, e edge.Execution, r edge.CheckReport) (int64, error) {
	id := e.CheckRunID
	if id == 0 {
		var err error
		id, err = c.Client.CreateCheckRun(ctx, r.Install, e.Repo, r.Name, e.SHA, r.DetailsURL, r.Summary)
		if err != nil {
			return 0, err
		}
	}
	u := CheckRunUpdate{Title: r.Title, Summary: r.Summary, DetailsURL: r.DetailsURL}
	if r.Status == "completed" {
		u.Conclusion = Conclusion(r.Conclusion)
	}
	return id, c.Client.UpdateCheckRun(ctx, r.Install, e.Repo, id, u)
}
