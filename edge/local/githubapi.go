package local

import (
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/github"
)

// githubAPI is the brokered GitHub port (writeback, draft pull requests, reads) over
// the same App client as the clone tokens; nil without App credentials.
func githubAPI(tokens edge.RepoTokens) edge.GitHubAPI {
	if t, ok := tokens.(github.Tokens); ok && t.Client != nil {
		return github.API{Client: t.Client}
	}
	return nil
}
