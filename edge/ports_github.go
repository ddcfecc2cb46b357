package edge

import (
	"context"
	"fmt"
	"time"
)

// GitHubAPI is what the edge brokers on GitHub for runs: reads, and commits on a branch
// with a pull request (writeback, draft pull requests). The adapter holds the App
// credentials (edge/github); nil on a deploy without them. Installation id 0 means
// look it up by repository.
type GitHubAPI interface {
	OpenPullRequest(ctx context.Context, install int64, repo string, pr PullRequestSpec) (PullRequestOutcome, error)
	Repository(ctx context.Context, install int64, repo string) (RepositoryInfo, error)
	OpenPullRequests(ctx context.Context, install int64, repo string) ([]PullRequestInfo, error)
}

// PullRequestSpec is a branch cut from Base with one commit of Files on it, and the
// pull request to open or update for it (nil PR: push the branch only).
type PullRequestSpec struct {
	Branch        string
	Base          string // "" = the repository's default branch
	CommitMessage string
	Files         []PRFile
	PR            *PROptions
	KeepExisting  bool // leave an existing branch alone (reported as Skipped)
}

// PRFile is one file written or deleted.
type PRFile struct {
	Path       string
	Content    []byte
	Delete     bool
	Executable bool
}

// PROptions describe the pull request.
type PROptions struct {
	Title, Body string
	Draft       bool
}

// PullRequestOutcome is what OpenPullRequest did.
type PullRequestOutcome struct {
	Skipped          string // why nothing was pushed; the rest is then zero
	Branch, Base     string
	Commit           string
	BranchCreated    bool
	Files, Deletions int
	Number           int // 0 when no pull request
	URL              string
	Created          bool // false: an open pull request was updated
}

// RepositoryInfo is a repository as runs see it.
type RepositoryInfo struct {
	FullName, DefaultBranch, HTMLURL string
	Private                          bool
}

// PullRequestInfo is an open pull request.
type PullRequestInfo struct {
	Number                          int
	Title, Head, HeadSHA, Base, URL string
	Author                          string
	Draft                           bool
}

// GitHubError is a failed GitHub call as adapters report it: the HTTP status (0 when
// no response came), why (rate-limited, unauthorized, transient, other) and when to
// retry.
type GitHubError struct {
	Status     int
	Reason     string
	RetryAfter time.Duration
	Message    string
}

func (e *GitHubError) Error() string {
	return fmt.Sprintf("github: %d %s: %s", e.Status, e.Reason, e.Message)
}
