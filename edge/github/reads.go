package github

import (
	"context"

	gh "github.com/google/go-github/v62/github"
)

// Repository reads a repository (GET /repos/{owner}/{repo}).
func (c *Client) Repository(ctx context.Context, inst int64, repo string) (*gh.Repository, error) {
	inst, owner, name, err := c.target(ctx, inst, repo)
	if err != nil {
		return nil, err
	}
	var r *gh.Repository
	err = c.call(ctx, inst, func(g *gh.Client) (err error) {
		r, _, err = g.Repositories.Get(ctx, owner, name)
		return err
	})
	return r, err
}

// OpenPullRequests lists a repository's open pull requests, newest first, up to 300.
func (c *Client) OpenPullRequests(ctx context.Context, inst int64, repo string) ([]*gh.PullRequest, error) {
	inst, owner, name, err := c.target(ctx, inst, repo)
	if err != nil {
		return nil, err
	}
	var all []*gh.PullRequest
	for page := 1; page <= 3; page++ {
		var prs []*gh.PullRequest
		var resp *gh.Response
		err := c.call(ctx, inst, func(g *gh.Client) (err error) {
			prs, resp, err = g.PullRequests.List(ctx, owner, name, &gh.PullRequestListOptions{
				State: "open", ListOptions: gh.ListOptions{PerPage: 100, Page: page},
			})
			return err
		})
		if err != nil {
			return nil, err
		}
		all = append(all, prs...)
		if resp == nil || resp.NextPage == 0 {
			break
		}
	}
	return all, nil
}
