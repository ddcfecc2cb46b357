package github

import (
	"context"
	"errors"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// API is the edge.GitHubAPI port: brokered reads and pull requests for runs.
type API struct{ Client *Client }

var _ edge.GitHubAPI = API{}

// OpenPullRequest implements edge.GitHubAPI over Client.OpenPullRequest (the Git Data API).
func (a API) OpenPullRequest(ctx context.Context, install int64, repo string, pr edge.PullRequestSpec) (edge.PullRequestOutcome, error) {
	spec := PRSpec{Branch: pr.Branch, Base: pr.Base, CommitMessage: pr.CommitMessage, KeepExisting: pr.KeepExisting}
	for _, f := range pr.Files {
		spec.Files = append(spec.Files, FileChange{Path: f.Path, Content: f.Content, Delete: f.Delete, Executable: f.Executable})
	}
	if pr.PR != nil {
		spec.PR = &PROptions{Title: pr.PR.Title, Body: pr.PR.Body, Draft: pr.PR.Draft}
	}
	res, err := a.Client.OpenPullRequest(ctx, install, repo, spec)
	if err != nil {
		return edge.PullRequestOutcome{}, portError(err)
	}
	return edge.PullRequestOutcome{Skipped: res.Skipped, Branch: res.Branch, Base: res.Base, Commit: res.Commit,
		BranchCreated: res.BranchCreated, Files: res.Files, Deletions: res.Deletions, Number: res.Number, URL: res.URL, Created: res.Created}, nil
}

// Repository implements edge.GitHubAPI.
func (a API) Repository(ctx context.Context, install int64, repo string) (edge.RepositoryInfo, error) {
	r, err := a.Client.Repository(ctx, install, repo)
	if err != nil {
		return edge.RepositoryInfo{}, portError(err)
	}
	return edge.RepositoryInfo{FullName: r.GetFullName(), DefaultBranch: r.GetDefaultBranch(), HTMLURL: r.GetHTMLURL(), Private: r.GetPrivate()}, nil
}

// OpenPullRequests implements edge.GitHubAPI.
func (a API) OpenPullRequests(ctx context.Context, install int64, repo string) ([]edge.PullRequestInfo, error) {
	prs, err := a.Client.OpenPullRequests(ctx, install, repo)
	if err != nil {
		return nil, portError(err)
	}
	out := make([]edge.PullRequestInfo, 0, len(prs))
	for _, p := range prs {
		out = append(out, edge.PullRequestInfo{Number: p.GetNumber(), Title: p.GetTitle(), Head: p.GetHead().GetRef(),
			HeadSHA: p.GetHead().GetSHA(), Base: p.GetBase().GetRef(), URL: p.GetHTMLURL(), Author: p.GetUser().GetLogin(), Draft: p.GetDraft()})
	}
	return out, nil
}

// portError turns an *APIError into the edge's *GitHubError (keeping the chain).
func portError(err error) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		return err
	}
	msg := ae.Message
	if msg == "" {
		msg = err.Error()
	}
	return errors.Join(&edge.GitHubError{Status: ae.Status, Reason: string(ae.Reason), RetryAfter: ae.RetryAfter, Message: msg}, err)
}
