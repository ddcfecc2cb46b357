package agentapi

import (
	"context"
	"time"
)

// GitCredentialsRequest asks the edge for a token to clone a repository the run may
// read (POST /v1/agent/<exec>/git-credentials).
type GitCredentialsRequest struct {
	Attempt int    `json:"attempt"`
	Repo    string `json:"repo"` // owner/name
}

// GitCredentials answers GitCredentialsRequest: a short-lived GitHub installation token
// (the agent sends it as Basic x-access-token:<token> and never stores it), or an empty
// token when the edge has none for the repository, in which case the agent clones
// anonymously (public repositories).
type GitCredentials struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires,omitzero"`
}

// GitCredentials asks the edge for a token to clone repo.
func (c *Client) GitCredentials(ctx context.Context, repo string) (GitCredentials, error) {
	var g GitCredentials
	err := c.post(ctx, c.path("git-credentials"), GitCredentialsRequest{Attempt: c.Attempt, Repo: repo}, &g)
	return g, err
}
