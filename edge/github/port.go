package github

import (
	"context"
	"time"

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
	for _, a := range r.Annotations {
		u.Annotations = append(u.Annotations, Annotation{Path: a.Path, StartLine: a.StartLine, EndLine: a.EndLine,
			Level: a.Level, Title: a.Title, Message: a.Message, RawDetails: a.RawDetails})
	}
	return id, c.Client.UpdateCheckRun(ctx, r.Install, e.Repo, id, u)
}

// Tokens is the edge.RepoTokens port: installation tokens for cloning.
type Tokens struct{ Client *Client }

var _ edge.RepoTokens = Tokens{}

// RepoToken implements edge.RepoTokens.
func (t Tokens) RepoToken(ctx context.Context, repo string, installationID int64) (string, time.Time, error) {
	if installationID == 0 {
		id, err := t.Client.InstallationForRepo(ctx, repo)
		if err != nil {
			return "", time.Time{}, err
		}
		installationID = id
	}
	return t.Client.InstallationToken(ctx, installationID)
}
