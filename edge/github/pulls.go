package github

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	gh "github.com/google/go-github/v62/github"
)

// PRSpec is a writeback: files to commit on a branch cut from the base, and
// the pull request to open for it. Paths have been validated by the caller
// (allowlist, traversal, size); the client only refuses empty ones.
type PRSpec struct {
	// Branch is the head branch, without refs/heads/. It is force-updated
	// to a single commit on top of Base on every call.
	Branch string
	// Base is the branch to start from and merge into; empty means the
	// repository's default branch.
	Base string
	// CommitMessage of the one commit.
	CommitMessage string
	// Files are the changes; deletions of paths the base does not have are
	// dropped.
	Files []FileChange
	// PR is the pull request to open or update; nil pushes the branch only.
	PR *PROptions
	// KeepExisting leaves an existing head branch alone and reports
	// Skipped (the contract's updateExisting: false).
	KeepExisting bool
}

// FileChange is one file written or deleted.
type FileChange struct {
	Path       string
	Content    []byte // ignored when Delete
	Delete     bool
	Executable bool // mode 100755 instead of 100644
}

// PROptions describe the pull request.
type PROptions struct {
	Title string
	Body  string
	Draft bool // used when the PR is created; an open PR keeps its draft state
}

// PRResult is what OpenPullRequest did.
type PRResult struct {
	// Skipped, when not empty, says why nothing was pushed ("no files",
	// "no changes against <base>", "branch <b> exists"); the rest is zero
	// except Base.
	Skipped string
	Branch  string
	Base    string
	Commit  string // sha of the pushed commit
	// BranchCreated is false when an existing branch was force-updated.
	BranchCreated bool
	// Files and Deletions count the changes sent (deletions of absent paths
	// are not counted).
	Files, Deletions int
	// Number and URL of the pull request; 0 and "" when PR was nil.
	Number int
	URL    string
	// Created is false when an open pull request for the branch was
	// updated instead.
	Created bool
}

// OpenPullRequest commits spec.Files on top of the base branch, points
// spec.Branch at that commit (creating it, or force-updating it when it
// exists) and opens a pull request for it, or updates the title and body of
// the open one (contract §7 step 5). It never writes to the base branch.
func (c *Client) OpenPullRequest(ctx context.Context, inst int64, repo string, spec PRSpec) (PRResult, error) {
	if spec.Branch == "" {
		return PRResult{}, errors.New("github: writeback branch is empty")
	}
	for _, f := range spec.Files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") {
			return PRResult{}, fmt.Errorf("github: writeback path %q is not repository-relative", f.Path)
		}
	}
	inst, owner, name, err := c.target(ctx, inst, repo)
	if err != nil {
		return PRResult{}, err
	}
	res := PRResult{Branch: spec.Branch, Base: spec.Base}
	if res.Base == "" {
		var r *gh.Repository
		if err := c.call(ctx, inst, func(g *gh.Client) (err error) {
			r, _, err = g.Repositories.Get(ctx, owner, name)
			return err
		}); err != nil {
			return PRResult{}, fmt.Errorf("writeback: default branch: %w", err)
		}
		res.Base = r.GetDefaultBranch()
	}
	if res.Base == spec.Branch {
		return PRResult{}, fmt.Errorf("github: writeback branch %q is the base branch", spec.Branch)
	}
	if len(spec.Files) == 0 {
		return PRResult{Base: res.Base, Skipped: "no files"}, nil
	}

	var baseRef *gh.Reference
	if err := c.call(ctx, inst, func(g *gh.Client) (err error) {
		baseRef, _, err = g.Git.GetRef(ctx, owner, name, "heads/"+res.Base)
		return err
	}); err != nil {
		return PRResult{}, fmt.Errorf("writeback: base branch %s: %w", res.Base, err)
	}
	baseSHA := baseRef.GetObject().GetSHA()

	if spec.KeepExisting {
		err := c.call(ctx, inst, func(g *gh.Client) error {
			_, _, err := g.Git.GetRef(ctx, owner, name, "heads/"+spec.Branch)
			return err
		})
		switch {
		case err == nil:
			return PRResult{Base: res.Base, Skipped: fmt.Sprintf("branch %s exists", spec.Branch)}, nil
		case !IsStatus(err, http.StatusNotFound):
			return PRResult{}, fmt.Errorf("writeback: head branch %s: %w", spec.Branch, err)
		}
	}

	var baseCommit *gh.Commit
	if err := c.call(ctx, inst, func(g *gh.Client) (err error) {
		baseCommit, _, err = g.Git.GetCommit(ctx, owner, name, baseSHA)
		return err
	}); err != nil {
		return PRResult{}, fmt.Errorf("writeback: base commit %s: %w", baseSHA, err)
	}
	baseTree := baseCommit.GetTree().GetSHA()

	entries, err := c.treeEntries(ctx, inst, owner, name, baseTree, spec.Files, &res)
	if err != nil {
		return PRResult{}, err
	}
	if len(entries) == 0 {
		return PRResult{Base: res.Base, Skipped: "no changes against " + res.Base}, nil
	}
	var tree *gh.Tree
	if err := c.call(ctx, inst, func(g *gh.Client) (err error) {
		tree, _, err = g.Git.CreateTree(ctx, owner, name, baseTree, entries)
		return err
	}); err != nil {
		return PRResult{}, fmt.Errorf("writeback: tree: %w", err)
	}
	if tree.GetSHA() == baseTree {
		return PRResult{Base: res.Base, Skipped: "no changes against " + res.Base}, nil
	}

	var commit *gh.Commit
	if err := c.call(ctx, inst, func(g *gh.Client) (err error) {
		commit, _, err = g.Git.CreateCommit(ctx, owner, name, &gh.Commit{
			Message: gh.String(spec.CommitMessage),
			Tree:    &gh.Tree{SHA: gh.String(tree.GetSHA())},
			Parents: []*gh.Commit{{SHA: gh.String(baseSHA)}},
		}, nil)
		return err
	}); err != nil {
		return PRResult{}, fmt.Errorf("writeback: commit: %w", err)
	}
	res.Commit = commit.GetSHA()

	if err := c.pointBranch(ctx, inst, owner, name, spec.Branch, res.Commit, &res); err != nil {
		return PRResult{}, err
	}
	if spec.PR == nil {
		return res, nil
	}
	if err := c.upsertPR(ctx, inst, owner, name, res.Base, spec, &res); err != nil {
		return PRResult{}, err
	}
	return res, nil
}

// treeEntries uploads the written files as blobs and lists the tree entries,
// deletions as sha:null. Deletions of paths absent from the base tree are
// dropped, since GitHub refuses them; when the base listing is truncated
// they are all sent.
func (c *Client) treeEntries(ctx context.Context, inst int64, owner, name, baseTree string, files []FileChange, res *PRResult) ([]*gh.TreeEntry, error) {
	var present map[string]bool // nil: unknown, send every deletion
	if slices.ContainsFunc(files, func(f FileChange) bool { return f.Delete }) {
		var t *gh.Tree
		if err := c.call(ctx, inst, func(g *gh.Client) (err error) {
			t, _, err = g.Git.GetTree(ctx, owner, name, baseTree, true)
			return err
		}); err != nil {
			return nil, fmt.Errorf("writeback: base tree: %w", err)
		}
		if !t.GetTruncated() {
			present = map[string]bool{}
			for _, e := range t.Entries {
				if e.GetType() == "blob" {
					present[e.GetPath()] = true
				}
			}
		}
	}
	var entries []*gh.TreeEntry
	for _, f := range files {
		mode := "100644"
		if f.Executable {
			mode = "100755"
		}
		if f.Delete {
			if present != nil && !present[f.Path] {
				continue
			}
			entries = append(entries, &gh.TreeEntry{Path: gh.String(f.Path), Mode: gh.String(mode), Type: gh.String("blob")})
			res.Deletions++
			continue
		}
		var blob *gh.Blob
		if err := c.call(ctx, inst, func(g *gh.Client) (err error) {
			blob, _, err = g.Git.CreateBlob(ctx, owner, name, &gh.Blob{
				Content:  gh.String(base64.StdEncoding.EncodeToString(f.Content)),
				Encoding: gh.String("base64"),
			})
			return err
		}); err != nil {
			return nil, fmt.Errorf("writeback: blob %s: %w", f.Path, err)
		}
		entries = append(entries, &gh.TreeEntry{Path: gh.String(f.Path), Mode: gh.String(mode), Type: gh.String("blob"), SHA: gh.String(blob.GetSHA())})
		res.Files++
	}
	return entries, nil
}

// pointBranch creates refs/heads/<branch> at sha, or force-updates it when
// it already exists (422 "Reference already exists" on create).
func (c *Client) pointBranch(ctx context.Context, inst int64, owner, name, branch, sha string, res *PRResult) error {
	ref := &gh.Reference{Ref: gh.String("refs/heads/" + branch), Object: &gh.GitObject{SHA: gh.String(sha)}}
	err := c.call(ctx, inst, func(g *gh.Client) error {
		_, _, err := g.Git.CreateRef(ctx, owner, name, ref)
		return err
	})
	if err == nil {
		res.BranchCreated = true
		return nil
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity ||
		!strings.Contains(strings.ToLower(errorText(ae)), "already exists") {
		return fmt.Errorf("writeback: create branch %s: %w", branch, err)
	}
	if err := c.call(ctx, inst, func(g *gh.Client) error {
		_, _, err := g.Git.UpdateRef(ctx, owner, name, ref, true)
		return err
	}); err != nil {
		return fmt.Errorf("writeback: force-update branch %s: %w", branch, err)
	}
	return nil
}

// upsertPR updates the first open pull request from the branch, or creates
// one. A create refused because the PR already exists (a retried request, a
// concurrent run) falls back to the update.
func (c *Client) upsertPR(ctx context.Context, inst int64, owner, name, base string, spec PRSpec, res *PRResult) error {
	find := func() (*gh.PullRequest, error) {
		var prs []*gh.PullRequest
		err := c.call(ctx, inst, func(g *gh.Client) (err error) {
			prs, _, err = g.PullRequests.List(ctx, owner, name, &gh.PullRequestListOptions{
				State: "open", Head: owner + ":" + spec.Branch, ListOptions: gh.ListOptions{PerPage: 100},
			})
			return err
		})
		if err != nil || len(prs) == 0 {
			return nil, err
		}
		return prs[0], nil
	}
	update := func(pr *gh.PullRequest) error {
		var out *gh.PullRequest
		if err := c.call(ctx, inst, func(g *gh.Client) (err error) {
			out, _, err = g.PullRequests.Edit(ctx, owner, name, pr.GetNumber(), &gh.PullRequest{
				Title: gh.String(spec.PR.Title), Body: gh.String(spec.PR.Body),
			})
			return err
		}); err != nil {
			return fmt.Errorf("writeback: update pull request #%d: %w", pr.GetNumber(), err)
		}
		res.Number, res.URL, res.Created = out.GetNumber(), out.GetHTMLURL(), false
		return nil
	}

	pr, err := find()
	if err != nil {
		return fmt.Errorf("writeback: find pull request for %s: %w", spec.Branch, err)
	}
	if pr != nil {
		return update(pr)
	}
	var out *gh.PullRequest
	err = c.call(ctx, inst, func(g *gh.Client) (err error) {
		out, _, err = g.PullRequests.Create(ctx, owner, name, &gh.NewPullRequest{
			Title: gh.String(spec.PR.Title), Head: gh.String(spec.Branch), Base: gh.String(base),
			Body: gh.String(spec.PR.Body), Draft: gh.Bool(spec.PR.Draft),
		})
		return err
	})
	if err == nil {
		res.Number, res.URL, res.Created = out.GetNumber(), out.GetHTMLURL(), true
		return nil
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity && strings.Contains(strings.ToLower(errorText(ae)), "already exists") {
		if pr, ferr := find(); ferr == nil && pr != nil {
			return update(pr)
		}
	}
	return fmt.Errorf("writeback: create pull request for %s: %w", spec.Branch, err)
}

// errorText is GitHub's message plus the per-field error messages, where
// "A pull request already exists" lives.
func errorText(ae *APIError) string {
	text := ae.Message
	var er *gh.ErrorResponse
	if errors.As(ae.Err, &er) {
		for _, e := range er.Errors {
			text += "; " + e.Message
		}
	}
	return text
}

// CreateReview posts a review with event COMMENT on pull request number and
// returns its id.
func (c *Client) CreateReview(ctx context.Context, inst int64, repo string, number int, body string) (int64, error) {
	inst, owner, name, err := c.target(ctx, inst, repo)
	if err != nil {
		return 0, err
	}
	var review *gh.PullRequestReview
	err = c.call(ctx, inst, func(g *gh.Client) (err error) {
		review, _, err = g.PullRequests.CreateReview(ctx, owner, name, number, &gh.PullRequestReviewRequest{
			Body: gh.String(body), Event: gh.String("COMMENT"),
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	return review.GetID(), nil
}
