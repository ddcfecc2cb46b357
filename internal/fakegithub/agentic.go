package fakegithub

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Issue comments on pull requests (what pr-review keeps its review in) and workflow
// runs (what ci-triage-pr reads), as GitHub serves them.

// IssueComment is a stored comment on an issue or pull request.
type IssueComment struct {
	ID        int64
	Number    int // the issue or pull request
	Body      string
	Login     string // author; an App's is "<slug>[bot]"
	Bot       bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// WorkflowRun is a stored GitHub Actions run.
type WorkflowRun struct {
	ID         int64
	Name       string
	HeadBranch string
	HeadSHA    string
	Event      string
	Status     string // completed, in_progress, …
	Conclusion string // success, failure, …
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Comments returns the comments of issue or pull request number, oldest first.
func (f *Fake) Comments(repoName string, number int) []IssueComment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []IssueComment
	for _, c := range f.mustRepo(repoName).comments {
		if c.Number == number {
			out = append(out, *c)
		}
	}
	return out
}

// AddComment stores a comment written by a person (login) or an App.
func (f *Fake) AddComment(repoName string, number int, login, body string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UTC().Truncate(time.Second)
	c := &IssueComment{ID: f.id(), Number: number, Body: body, Login: login, CreatedAt: now, UpdatedAt: now}
	r := f.mustRepo(repoName)
	r.comments = append(r.comments, c)
	return c.ID
}

// AddWorkflowRun stores a workflow run (ID assigned when 0).
func (f *Fake) AddWorkflowRun(repoName string, run WorkflowRun) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if run.ID == 0 {
		run.ID = f.id()
	}
	r := f.mustRepo(repoName)
	r.runs = append(r.runs, run)
}

func (q *request) commentJSON(c *IssueComment) map[string]any {
	r := q.repo
	typ := "User"
	if c.Bot {
		typ = "Bot"
	}
	return map[string]any{
		"id": c.ID, "node_id": fmt.Sprintf("IC_fake%d", c.ID), "body": c.Body,
		"html_url":   fmt.Sprintf("https://github.com/%s/pull/%d#issuecomment-%d", r.full(), c.Number, c.ID),
		"url":        fmt.Sprintf("http://%s/repos/%s/issues/comments/%d", q.r.Host, r.full(), c.ID),
		"issue_url":  fmt.Sprintf("http://%s/repos/%s/issues/%d", q.r.Host, r.full(), c.Number),
		"user":       map[string]any{"login": c.Login, "type": typ},
		"created_at": c.CreatedAt.Format(time.RFC3339), "updated_at": c.UpdatedAt.Format(time.RFC3339),
		"author_association": "NONE",
	}
}

func (f *Fake) issueRoutes() {
	const docComments = docRoot + "/issues/comments"
	f.handle("GET /repos/{owner}/{repo}/issues/{number}/comments", authInst, "pull_requests:read", docComments+"#list-issue-comments", func(q *request) {
		n, err := strconv.Atoi(q.r.PathValue("number"))
		if err != nil || q.repo.pull(q.r.PathValue("number")) == nil {
			q.notFound()
			return
		}
		var items []any
		for _, c := range q.repo.comments {
			if c.Number == n {
				items = append(items, q.commentJSON(c))
			}
		}
		q.paginate(items, nil)
	})
	f.handle("POST /repos/{owner}/{repo}/issues/{number}/comments", authInst, "pull_requests:write", docComments+"#create-an-issue-comment", func(q *request) {
		doc := docComments + "#create-an-issue-comment"
		pr := q.repo.pull(q.r.PathValue("number"))
		if pr == nil {
			q.notFound()
			return
		}
		var b struct {
			Body *string `json:"body"`
		}
		if !q.decode(&b, doc) {
			return
		}
		if b.Body == nil || *b.Body == "" {
			q.invalid(doc, fieldError{Resource: "IssueComment", Code: "missing_field", Field: "body"})
			return
		}
		if len(*b.Body) > 65536 {
			q.invalid(doc, fieldError{Resource: "IssueComment", Code: "custom", Field: "body", Message: "Body is too long (maximum is 65536 characters)"})
			return
		}
		now := q.f.now().UTC().Truncate(time.Second)
		c := &IssueComment{ID: q.f.id(), Number: pr.Number, Body: *b.Body, Login: q.f.botLogin(q.inst.appID), Bot: true, CreatedAt: now, UpdatedAt: now}
		q.repo.comments = append(q.repo.comments, c)
		q.json(http.StatusCreated, q.commentJSON(c))
	})
	f.handle("PATCH /repos/{owner}/{repo}/issues/comments/{id}", authInst, "pull_requests:write", docComments+"#update-an-issue-comment", func(q *request) {
		doc := docComments + "#update-an-issue-comment"
		id, _ := strconv.ParseInt(q.r.PathValue("id"), 10, 64)
		var c *IssueComment
		for _, x := range q.repo.comments {
			if x.ID == id {
				c = x
			}
		}
		if c == nil {
			q.notFound()
			return
		}
		if !c.Bot || c.Login != q.f.botLogin(q.inst.appID) {
			q.error(http.StatusForbidden, "Resource not accessible by integration", doc)
			return
		}
		var b struct {
			Body *string `json:"body"`
		}
		if !q.decode(&b, doc) {
			return
		}
		if b.Body == nil || *b.Body == "" {
			q.invalid(doc, fieldError{Resource: "IssueComment", Code: "missing_field", Field: "body"})
			return
		}
		c.Body, c.UpdatedAt = *b.Body, q.f.now().UTC().Truncate(time.Second)
		q.json(http.StatusOK, q.commentJSON(c))
	})
	const docRuns = docRoot + "/actions/workflow-runs"
	f.handle("GET /repos/{owner}/{repo}/actions/runs", authInst, "actions:read", docRuns+"#list-workflow-runs-for-a-repository", func(q *request) {
		v := q.r.URL.Query()
		status := v.Get("status")
		var since time.Time
		if c := v.Get("created"); c != "" {
			t, err := time.Parse(time.RFC3339, trimPrefix(c, ">="))
			if err != nil {
				q.error(http.StatusUnprocessableEntity, "Invalid created filter", docRuns)
				return
			}
			since = t
		}
		var items []any
		for i := len(q.repo.runs) - 1; i >= 0; i-- { // newest first
			r := q.repo.runs[i]
			if status != "" && r.Status != status && r.Conclusion != status {
				continue
			}
			if !since.IsZero() && r.CreatedAt.Before(since) {
				continue
			}
			items = append(items, map[string]any{"id": r.ID, "name": r.Name, "head_branch": r.HeadBranch, "head_sha": r.HeadSHA,
				"event": r.Event, "status": r.Status, "conclusion": r.Conclusion,
				"html_url":   fmt.Sprintf("https://github.com/%s/actions/runs/%d", q.repo.full(), r.ID),
				"created_at": r.CreatedAt.UTC().Format(time.RFC3339), "updated_at": r.UpdatedAt.UTC().Format(time.RFC3339)})
		}
		q.paginate(items, func(page []any) any { return map[string]any{"total_count": len(items), "workflow_runs": page} })
	})
}

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// botLogin is an App's login as its comments show it.
func (f *Fake) botLogin(appID int64) string {
	if a := f.apps[appID]; a != nil {
		return a.Slug + "[bot]"
	}
	return "app[bot]"
}
