package github

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

type repoJSON struct {
	FullName      string `json:"full_name"`
	DefaultBranch string `json:"default_branch"`
	HTMLURL       string `json:"html_url"`
	Private       bool   `json:"private"`
}

type pullJSON struct {
	Number  int    `json:"number"`
	Title   string `json:"title"`
	HTMLURL string `json:"html_url"`
	Draft   bool   `json:"draft"`
	User    struct {
		Login string `json:"login"`
	} `json:"user"`
	Head struct {
		Ref string `json:"ref"`
		SHA string `json:"sha"`
	} `json:"head"`
	Base struct {
		Ref string `json:"ref"`
	} `json:"base"`
}

// Repository implements edge.GitHubAPI.
func (c *Client) Repository(ctx context.Context, inst int64, repo string) (edge.RepositoryInfo, error) {
	inst, prefix, err := c.target(ctx, inst, repo)
	if err != nil {
		return edge.RepositoryInfo{}, err
	}
	var r repoJSON
	if err := c.do(ctx, inst, request{method: http.MethodGet, path: strings.TrimSuffix(prefix, "/"), out: &r}, nil); err != nil {
		return edge.RepositoryInfo{}, err
	}
	return edge.RepositoryInfo{FullName: r.FullName, DefaultBranch: r.DefaultBranch, HTMLURL: r.HTMLURL, Private: r.Private}, nil
}

// OpenPullRequests implements edge.GitHubAPI: open pull requests, newest first, up
// to 300.
func (c *Client) OpenPullRequests(ctx context.Context, inst int64, repo string) ([]edge.PullRequestInfo, error) {
	inst, prefix, err := c.target(ctx, inst, repo)
	if err != nil {
		return nil, err
	}
	var out []edge.PullRequestInfo
	for page := 1; page <= 3; page++ {
		var prs []pullJSON
		h := http.Header{}
		q := url.Values{"state": {"open"}, "per_page": {"100"}, "page": {fmt.Sprint(page)}}
		if err := c.do(ctx, inst, request{method: http.MethodGet, path: prefix + "pulls", query: q, out: &prs, header: h}, nil); err != nil {
			return nil, err
		}
		for _, p := range prs {
			out = append(out, edge.PullRequestInfo{Number: p.Number, Title: p.Title, Head: p.Head.Ref, HeadSHA: p.Head.SHA,
				Base: p.Base.Ref, URL: p.HTMLURL, Author: p.User.Login, Draft: p.Draft})
		}
		if !strings.Contains(h.Get("Link"), `rel="next"`) {
			break
		}
	}
	return out, nil
}

// refPath is the escaped path of a branch's ref (a branch may contain slashes).
func refPath(branch string) string {
	segs := strings.Split("heads/"+branch, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

type treeEntry struct {
	Path string  `json:"path"`
	Mode string  `json:"mode"`
	Type string  `json:"type"`
	SHA  *string `json:"sha"` // null deletes the path
}

// OpenPullRequest implements edge.GitHubAPI: it commits the files on top of the base
// branch, points the branch at that commit (creating it, or force-updating it) and
// opens a pull request for it, or updates the open one. It never writes to the base.
func (c *Client) OpenPullRequest(ctx context.Context, inst int64, repo string, spec edge.PullRequestSpec) (edge.PullRequestOutcome, error) {
	if spec.Branch == "" {
		return edge.PullRequestOutcome{}, errors.New("github: writeback branch is empty")
	}
	for _, f := range spec.Files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") {
			return edge.PullRequestOutcome{}, fmt.Errorf("github: writeback path %q is not repository-relative", f.Path)
		}
	}
	inst, prefix, err := c.target(ctx, inst, repo)
	if err != nil {
		return edge.PullRequestOutcome{}, err
	}
	res := edge.PullRequestOutcome{Branch: spec.Branch, Base: spec.Base}
	get := func(path string, out any) error {
		return c.do(ctx, inst, request{method: http.MethodGet, path: prefix + path, out: out}, nil)
	}
	post := func(path string, body, out any) error {
		return c.do(ctx, inst, request{method: http.MethodPost, path: prefix + path, body: body, out: out}, nil)
	}
	if res.Base == "" {
		var r repoJSON
		if err := c.do(ctx, inst, request{method: http.MethodGet, path: strings.TrimSuffix(prefix, "/"), out: &r}, nil); err != nil {
			return edge.PullRequestOutcome{}, fmt.Errorf("writeback: default branch: %w", err)
		}
		res.Base = r.DefaultBranch
	}
	if res.Base == spec.Branch {
		return edge.PullRequestOutcome{}, fmt.Errorf("github: writeback branch %q is the base branch", spec.Branch)
	}
	if len(spec.Files) == 0 {
		return edge.PullRequestOutcome{Base: res.Base, Skipped: "no files"}, nil
	}
	var ref struct {
		Object struct {
			SHA string `json:"sha"`
		} `json:"object"`
	}
	if err := get("git/ref/"+refPath(res.Base), &ref); err != nil {
		return edge.PullRequestOutcome{}, fmt.Errorf("writeback: base branch %s: %w", res.Base, err)
	}
	baseSHA := ref.Object.SHA
	if spec.KeepExisting {
		switch err := get("git/ref/"+refPath(spec.Branch), nil); {
		case err == nil:
			return edge.PullRequestOutcome{Base: res.Base, Skipped: fmt.Sprintf("branch %s exists", spec.Branch)}, nil
		case !isStatus(err, http.StatusNotFound):
			return edge.PullRequestOutcome{}, fmt.Errorf("writeback: head branch %s: %w", spec.Branch, err)
		}
	}
	var commit struct {
		SHA  string `json:"sha"`
		Tree struct {
			SHA string `json:"sha"`
		} `json:"tree"`
	}
	if err := get("git/commits/"+url.PathEscape(baseSHA), &commit); err != nil {
		return edge.PullRequestOutcome{}, fmt.Errorf("writeback: base commit %s: %w", baseSHA, err)
	}
	baseTree := commit.Tree.SHA

	// Deletions of paths the base does not have are dropped (GitHub refuses them);
	// when the base listing is truncated they are all sent.
	var present map[string]bool
	if slices.ContainsFunc(spec.Files, func(f edge.PRFile) bool { return f.Delete }) {
		var t struct {
			Tree []struct {
				Path string `json:"path"`
				Type string `json:"type"`
			} `json:"tree"`
			Truncated bool `json:"truncated"`
		}
		if err := c.do(ctx, inst, request{method: http.MethodGet, path: prefix + "git/trees/" + url.PathEscape(baseTree),
			query: url.Values{"recursive": {"1"}}, out: &t}, nil); err != nil {
			return edge.PullRequestOutcome{}, fmt.Errorf("writeback: base tree: %w", err)
		}
		if !t.Truncated {
			present = map[string]bool{}
			for _, e := range t.Tree {
				if e.Type == "blob" {
					present[e.Path] = true
				}
			}
		}
	}
	var entries []treeEntry
	for _, f := range spec.Files {
		mode := "100644"
		if f.Executable {
			mode = "100755"
		}
		if f.Delete {
			if present != nil && !present[f.Path] {
				continue
			}
			entries = append(entries, treeEntry{Path: f.Path, Mode: mode, Type: "blob"})
			res.Deletions++
			continue
		}
		var blob struct {
			SHA string `json:"sha"`
		}
		if err := post("git/blobs", map[string]string{"content": base64.StdEncoding.EncodeToString(f.Content), "encoding": "base64"}, &blob); err != nil {
			return edge.PullRequestOutcome{}, fmt.Errorf("writeback: blob %s: %w", f.Path, err)
		}
		entries = append(entries, treeEntry{Path: f.Path, Mode: mode, Type: "blob", SHA: &blob.SHA})
		res.Files++
	}
	if len(entries) == 0 {
		return edge.PullRequestOutcome{Base: res.Base, Skipped: "no changes against " + res.Base}, nil
	}
	var tree struct {
		SHA string `json:"sha"`
	}
	if err := post("git/trees", map[string]any{"base_tree": baseTree, "tree": entries}, &tree); err != nil {
		return edge.PullRequestOutcome{}, fmt.Errorf("writeback: tree: %w", err)
	}
	if tree.SHA == baseTree {
		return edge.PullRequestOutcome{Base: res.Base, Skipped: "no changes against " + res.Base}, nil
	}
	var created struct {
		SHA string `json:"sha"`
	}
	if err := post("git/commits", map[string]any{"message": spec.CommitMessage, "tree": tree.SHA, "parents": []string{baseSHA}}, &created); err != nil {
		return edge.PullRequestOutcome{}, fmt.Errorf("writeback: commit: %w", err)
	}
	res.Commit = created.SHA

	// Point the branch: create it, or force-update it when it exists.
	err = post("git/refs", map[string]string{"ref": "refs/heads/" + spec.Branch, "sha": res.Commit}, nil)
	switch {
	case err == nil:
		res.BranchCreated = true
	case alreadyExists(err):
		if err := c.do(ctx, inst, request{method: http.MethodPatch, path: prefix + "git/refs/" + refPath(spec.Branch),
			body: map[string]any{"sha": res.Commit, "force": true}}, nil); err != nil {
			return edge.PullRequestOutcome{}, fmt.Errorf("writeback: force-update branch %s: %w", spec.Branch, err)
		}
	default:
		return edge.PullRequestOutcome{}, fmt.Errorf("writeback: create branch %s: %w", spec.Branch, err)
	}
	if spec.PR == nil {
		return res, nil
	}
	if err := c.upsertPR(ctx, inst, prefix, strings.Split(repo, "/")[0], res.Base, spec, &res); err != nil {
		return edge.PullRequestOutcome{}, err
	}
	return res, nil
}

// upsertPR updates the open pull request from the branch, or creates one; a create
// refused because it exists (a retry, a concurrent run) falls back to the update.
func (c *Client) upsertPR(ctx context.Context, inst int64, prefix, owner, base string, spec edge.PullRequestSpec, res *edge.PullRequestOutcome) error {
	find := func() (*pullJSON, error) {
		var prs []pullJSON
		q := url.Values{"state": {"open"}, "head": {owner + ":" + spec.Branch}, "per_page": {"100"}}
		if err := c.do(ctx, inst, request{method: http.MethodGet, path: prefix + "pulls", query: q, out: &prs}, nil); err != nil || len(prs) == 0 {
			return nil, err
		}
		return &prs[0], nil
	}
	update := func(pr *pullJSON) error {
		var out pullJSON
		if err := c.do(ctx, inst, request{method: http.MethodPatch, path: prefix + "pulls/" + fmt.Sprint(pr.Number),
			body: map[string]string{"title": spec.PR.Title, "body": spec.PR.Body}, out: &out}, nil); err != nil {
			return fmt.Errorf("writeback: update pull request #%d: %w", pr.Number, err)
		}
		res.Number, res.URL, res.Created = out.Number, out.HTMLURL, false
		return nil
	}
	pr, err := find()
	if err != nil {
		return fmt.Errorf("writeback: find pull request for %s: %w", spec.Branch, err)
	}
	if pr != nil {
		return update(pr)
	}
	var out pullJSON
	err = c.do(ctx, inst, request{method: http.MethodPost, path: prefix + "pulls", out: &out,
		body: map[string]any{"title": spec.PR.Title, "head": spec.Branch, "base": base, "body": spec.PR.Body, "draft": spec.PR.Draft}}, nil)
	if err == nil {
		res.Number, res.URL, res.Created = out.Number, out.HTMLURL, true
		return nil
	}
	if alreadyExists(err) {
		if pr, ferr := find(); ferr == nil && pr != nil {
			return update(pr)
		}
	}
	return fmt.Errorf("writeback: create pull request for %s: %w", spec.Branch, err)
}
