package github

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// The agentic runs' GitHub calls: the one comment a run keeps on a pull request
// (issue comments, found by a marker line and edited in place) and failed workflow
// runs (the App needs actions: read).

type commentJSON struct {
	ID      int64  `json:"id"`
	Body    string `json:"body"`
	HTMLURL string `json:"html_url"`
	User    struct {
		Login string `json:"login"`
		Type  string `json:"type"`
	} `json:"user"`
}

// maxCommentPages bounds the search for the marker (100 comments a page).
const maxCommentPages = 10

// FindComment returns the pull request's comment holding marker, written by a bot (an
// App's comments are; a person quoting the marker does not capture the run's comment).
func (c *Client) FindComment(ctx context.Context, inst int64, repo string, pr int, marker string) (edge.PRComment, bool, error) {
	inst, prefix, err := c.target(ctx, inst, repo)
	if err != nil {
		return edge.PRComment{}, false, err
	}
	for page := 1; page <= maxCommentPages; page++ {
		var list []commentJSON
		h := http.Header{}
		q := url.Values{"per_page": {"100"}, "page": {fmt.Sprint(page)}}
		if err := c.do(ctx, inst, request{method: http.MethodGet, path: prefix + fmt.Sprintf("issues/%d/comments", pr), query: q, out: &list, header: h}, nil); err != nil {
			return edge.PRComment{}, false, err
		}
		for _, cm := range list {
			if strings.Contains(cm.Body, marker) && (cm.User.Type == "Bot" || strings.HasSuffix(cm.User.Login, "[bot]")) {
				return edge.PRComment{ID: cm.ID, URL: cm.HTMLURL, Body: cm.Body}, true, nil
			}
		}
		if !strings.Contains(h.Get("Link"), `rel="next"`) {
			break
		}
	}
	return edge.PRComment{}, false, nil
}

// PutComment updates the comment holding marker, or creates it.
func (c *Client) PutComment(ctx context.Context, inst int64, repo string, pr int, marker, body string) (edge.PRComment, bool, error) {
	found, ok, err := c.FindComment(ctx, inst, repo, pr, marker)
	if err != nil {
		return edge.PRComment{}, false, err
	}
	inst, prefix, err := c.target(ctx, inst, repo)
	if err != nil {
		return edge.PRComment{}, false, err
	}
	var out commentJSON
	if ok {
		err = c.do(ctx, inst, request{method: http.MethodPatch, path: prefix + fmt.Sprintf("issues/comments/%d", found.ID),
			body: map[string]string{"body": body}, out: &out}, nil)
	} else {
		err = c.do(ctx, inst, request{method: http.MethodPost, path: prefix + fmt.Sprintf("issues/%d/comments", pr),
			body: map[string]string{"body": body}, out: &out}, nil)
	}
	if err != nil {
		return edge.PRComment{}, false, err
	}
	return edge.PRComment{ID: out.ID, URL: out.HTMLURL, Body: out.Body}, !ok, nil
}

// FailedRuns lists the workflow runs that completed with a failure since a time
// (newest first, at most 300).
func (c *Client) FailedRuns(ctx context.Context, inst int64, repo string, since time.Time) ([]edge.WorkflowRunInfo, error) {
	inst, prefix, err := c.target(ctx, inst, repo)
	if err != nil {
		return nil, err
	}
	var out []edge.WorkflowRunInfo
	for page := 1; page <= 3; page++ {
		var resp struct {
			Runs []struct {
				ID         int64     `json:"id"`
				Name       string    `json:"name"`
				HeadBranch string    `json:"head_branch"`
				HeadSHA    string    `json:"head_sha"`
				Event      string    `json:"event"`
				Conclusion string    `json:"conclusion"`
				HTMLURL    string    `json:"html_url"`
				UpdatedAt  time.Time `json:"updated_at"`
			} `json:"workflow_runs"`
		}
		h := http.Header{}
		q := url.Values{"status": {"failure"}, "created": {">=" + since.UTC().Format(time.RFC3339)}, "per_page": {"100"}, "page": {fmt.Sprint(page)}}
		if err := c.do(ctx, inst, request{method: http.MethodGet, path: prefix + "actions/runs", query: q, out: &resp, header: h}, nil); err != nil {
			return nil, err
		}
		for _, r := range resp.Runs {
			out = append(out, edge.WorkflowRunInfo{ID: r.ID, Name: r.Name, Branch: r.HeadBranch, SHA: r.HeadSHA, Event: r.Event,
				Conclusion: r.Conclusion, URL: r.HTMLURL, UpdatedAt: r.UpdatedAt})
		}
		if !strings.Contains(h.Get("Link"), `rel="next"`) {
			break
		}
	}
	return out, nil
}

var (
	_ edge.PRCommenter = (*Client)(nil)
	_ edge.CIReader    = (*Client)(nil)
)
