package fakegithub

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// PullRequest is a stored pull request. Its head commit follows the head
// branch, as on GitHub.
type PullRequest struct {
	ID        int64
	Number    int
	Title     string
	Body      string
	State     string // open, closed
	Draft     bool
	Head      string // branch name
	Base      string // branch name
	AppID     int64  // the App that opened it
	CreatedAt time.Time
	UpdatedAt time.Time
	ClosedAt  time.Time
}

// Review is a stored pull-request review.
type Review struct {
	ID       int64
	Number   int    // the pull request
	State    string // COMMENTED, APPROVED, CHANGES_REQUESTED, PENDING
	Body     string
	CommitID string
	Comments []ReviewComment
	AppID    int64
}

// ReviewComment is an inline comment sent with a review.
type ReviewComment struct {
	Path string
	Line int
	Side string
	Body string
}

// PullRequests returns the repository's pull requests by number.
func (f *Fake) PullRequests(repoName string) []PullRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []PullRequest
	for _, pr := range f.mustRepo(repoName).pulls {
		out = append(out, *pr)
	}
	return out
}

// Reviews returns the reviews of pull request number.
func (f *Fake) Reviews(repoName string, number int) []Review {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Review
	for _, rv := range f.mustRepo(repoName).reviews[number] {
		c := *rv
		c.Comments = append([]ReviewComment(nil), rv.Comments...)
		out = append(out, c)
	}
	return out
}

func (r *repo) pull(number string) *PullRequest {
	n, err := strconv.Atoi(number)
	if err != nil || n < 1 {
		return nil
	}
	for _, pr := range r.pulls {
		if pr.Number == n {
			return pr
		}
	}
	return nil
}

func (f *Fake) pullRoutes() {
	const docPulls = docRoot + "/pulls/pulls"
	const docReviews = docRoot + "/pulls/reviews"
	f.handle("GET /repos/{owner}/{repo}/pulls", authInst, "pull_requests:read", docPulls+"#list-pull-requests", func(q *request) {
		r := q.repo
		v := q.r.URL.Query()
		state := v.Get("state")
		if state == "" {
			state = "open"
		}
		if state != "open" && state != "closed" && state != "all" {
			q.error(http.StatusUnprocessableEntity, fmt.Sprintf("Invalid request.\n\nFor 'state', %q is not a possible value.", state), docPulls)
			return
		}
		// head is "user:ref-name"; without the owner GitHub ignores it.
		headOwner, headBranch, headOK := strings.Cut(v.Get("head"), ":")
		var items []any
		for i := len(r.pulls) - 1; i >= 0; i-- { // newest first
			pr := r.pulls[i]
			if (state != "all" && pr.State != state) || (v.Has("base") && pr.Base != v.Get("base")) ||
				(headOK && (!strings.EqualFold(headOwner, r.owner) || pr.Head != headBranch)) {
				continue
			}
			items = append(items, q.pullJSON(pr))
		}
		q.paginate(items, nil)
	})
	f.handle("POST /repos/{owner}/{repo}/pulls", authInst, "pull_requests:write", docPulls+"#create-a-pull-request", func(q *request) {
		doc := docPulls + "#create-a-pull-request"
		r := q.repo
		var b struct {
			Title *string `json:"title"`
			Head  *string `json:"head"`
			Base  *string `json:"base"`
			Body  *string `json:"body"`
			Draft bool    `json:"draft"`
		}
		if !q.decode(&b, doc) {
			return
		}
		missing := func(field string) {
			q.invalid(doc, fieldError{Resource: "PullRequest", Code: "missing_field", Field: field})
		}
		switch {
		case b.Head == nil || *b.Head == "":
			missing("head")
			return
		case b.Base == nil || *b.Base == "":
			missing("base")
			return
		case b.Title == nil || *b.Title == "":
			missing("title")
			return
		}
		head := *b.Head
		if owner, branch, ok := strings.Cut(head, ":"); ok {
			if !strings.EqualFold(owner, r.owner) {
				q.invalid(doc, fieldError{Resource: "PullRequest", Code: "invalid", Field: "head"})
				return
			}
			head = branch
		}
		headSHA, baseSHA := r.refs["refs/heads/"+head], r.refs["refs/heads/"+*b.Base]
		switch {
		case headSHA == "":
			q.invalid(doc, fieldError{Resource: "PullRequest", Code: "invalid", Field: "head"})
			return
		case baseSHA == "":
			q.invalid(doc, fieldError{Resource: "PullRequest", Code: "invalid", Field: "base"})
			return
		case head == *b.Base || r.isAncestor(headSHA, baseSHA):
			q.invalid(doc, fieldError{Resource: "PullRequest", Code: "custom", Message: fmt.Sprintf("No commits between %s and %s", *b.Base, head)})
			return
		}
		for _, pr := range r.pulls {
			if pr.State == "open" && pr.Head == head && pr.Base == *b.Base {
				q.invalid(doc, fieldError{Resource: "PullRequest", Code: "custom", Message: fmt.Sprintf("A pull request already exists for %s:%s.", r.owner, head)})
				return
			}
		}
		now := q.f.now().UTC().Truncate(time.Second)
		r.issueNo++
		pr := &PullRequest{ID: q.f.id(), Number: r.issueNo, Title: *b.Title, State: "open", Draft: b.Draft,
			Head: head, Base: *b.Base, AppID: q.inst.appID, CreatedAt: now, UpdatedAt: now}
		if b.Body != nil {
			pr.Body = *b.Body
		}
		r.pulls = append(r.pulls, pr)
		q.json(http.StatusCreated, q.pullJSON(pr))
	})
	f.handle("GET /repos/{owner}/{repo}/pulls/{number}", authInst, "pull_requests:read", docPulls+"#get-a-pull-request", func(q *request) {
		pr := q.repo.pull(q.r.PathValue("number"))
		if pr == nil {
			q.notFound()
			return
		}
		q.json(http.StatusOK, q.pullJSON(pr))
	})
	f.handle("PATCH /repos/{owner}/{repo}/pulls/{number}", authInst, "pull_requests:write", docPulls+"#update-a-pull-request", func(q *request) {
		doc := docPulls + "#update-a-pull-request"
		r := q.repo
		pr := r.pull(q.r.PathValue("number"))
		if pr == nil {
			q.notFound()
			return
		}
		var b struct {
			Title *string `json:"title"`
			Body  *string `json:"body"`
			State *string `json:"state"`
			Base  *string `json:"base"`
		}
		if !q.decode(&b, doc) {
			return
		}
		if b.State != nil && *b.State != "open" && *b.State != "closed" {
			q.invalid(doc, fieldError{Resource: "PullRequest", Code: "invalid", Field: "state"})
			return
		}
		if b.Title != nil && *b.Title == "" {
			q.invalid(doc, fieldError{Resource: "PullRequest", Code: "missing_field", Field: "title"})
			return
		}
		if b.Base != nil && r.refs["refs/heads/"+*b.Base] == "" {
			q.invalid(doc, fieldError{Resource: "PullRequest", Code: "invalid", Field: "base"})
			return
		}
		if b.State != nil && *b.State == "open" && pr.State == "closed" {
			if r.refs["refs/heads/"+pr.Head] == "" {
				q.invalid(doc, fieldError{Resource: "PullRequest", Code: "custom", Message: "Cannot reopen a pull request whose head branch was deleted"})
				return
			}
			for _, other := range r.pulls {
				if other != pr && other.State == "open" && other.Head == pr.Head && other.Base == pr.Base {
					q.invalid(doc, fieldError{Resource: "PullRequest", Code: "custom", Message: fmt.Sprintf("A pull request already exists for %s:%s.", r.owner, pr.Head)})
					return
				}
			}
		}
		now := q.f.now().UTC().Truncate(time.Second)
		if b.Title != nil {
			pr.Title = *b.Title
		}
		if b.Body != nil {
			pr.Body = *b.Body
		}
		if b.Base != nil {
			pr.Base = *b.Base
		}
		if b.State != nil && *b.State != pr.State {
			pr.State = *b.State
			pr.ClosedAt = time.Time{}
			if pr.State == "closed" {
				pr.ClosedAt = now
			}
		}
		pr.UpdatedAt = now
		q.json(http.StatusOK, q.pullJSON(pr))
	})

	f.handle("POST /repos/{owner}/{repo}/pulls/{number}/reviews", authInst, "pull_requests:write", docReviews+"#create-a-review-for-a-pull-request", func(q *request) {
		doc := docReviews + "#create-a-review-for-a-pull-request"
		r := q.repo
		pr := r.pull(q.r.PathValue("number"))
		if pr == nil {
			q.notFound()
			return
		}
		var b struct {
			CommitID *string `json:"commit_id"`
			Body     string  `json:"body"`
			Event    *string `json:"event"`
			Comments []struct {
				Path string `json:"path"`
				Line int    `json:"line"`
				Side string `json:"side"`
				Body string `json:"body"`
			} `json:"comments"`
		}
		if !q.decode(&b, doc) {
			return
		}
		state := "PENDING"
		if b.Event != nil {
			switch *b.Event {
			case "COMMENT":
				state = "COMMENTED"
			case "APPROVE":
				state = "APPROVED"
			case "REQUEST_CHANGES":
				state = "CHANGES_REQUESTED"
			default:
				q.error(http.StatusUnprocessableEntity, fmt.Sprintf("Invalid request.\n\nFor 'properties/event', %q is not a possible value.", *b.Event), doc)
				return
			}
		}
		if (state == "COMMENTED" || state == "CHANGES_REQUESTED") && b.Body == "" && len(b.Comments) == 0 {
			q.errorWith(http.StatusUnprocessableEntity, "Unprocessable Entity", doc, []any{"Body is required for a review with event " + *b.Event})
			return
		}
		if pr.State != "open" && state != "PENDING" {
			q.errorWith(http.StatusUnprocessableEntity, "Unprocessable Entity", doc, []any{"Can not review a closed pull request"})
			return
		}
		commit := r.refs["refs/heads/"+pr.Head]
		if b.CommitID != nil {
			commit = strings.ToLower(*b.CommitID)
			if o := r.objects[commit]; o == nil || o.typ != "commit" {
				q.errorWith(http.StatusUnprocessableEntity, "Unprocessable Entity", doc, []any{"commit_id is not part of the pull request"})
				return
			}
		}
		rv := &Review{ID: q.f.id(), Number: pr.Number, State: state, Body: b.Body, CommitID: commit, AppID: q.inst.appID}
		for i, c := range b.Comments {
			if c.Path == "" || c.Body == "" {
				q.errorWith(http.StatusUnprocessableEntity, "Unprocessable Entity", doc, []any{fmt.Sprintf("comments[%d] needs path and body", i)})
				return
			}
			rv.Comments = append(rv.Comments, ReviewComment{Path: c.Path, Line: c.Line, Side: c.Side, Body: c.Body})
		}
		r.reviews[pr.Number] = append(r.reviews[pr.Number], rv)
		q.json(http.StatusOK, q.reviewJSON(rv))
	})
	f.handle("GET /repos/{owner}/{repo}/pulls/{number}/reviews", authInst, "pull_requests:read", docReviews+"#list-reviews-for-a-pull-request", func(q *request) {
		pr := q.repo.pull(q.r.PathValue("number"))
		if pr == nil {
			q.notFound()
			return
		}
		var items []any
		for _, rv := range q.repo.reviews[pr.Number] {
			items = append(items, q.reviewJSON(rv))
		}
		q.paginate(items, nil)
	})
}

func (q *request) botJSON(appID int64) map[string]any {
	app := q.f.apps[appID]
	return map[string]any{"login": app.Slug + "[bot]", "id": 41898282 + app.ID, "type": "Bot"}
}

func (q *request) pullJSON(pr *PullRequest) map[string]any {
	r := q.repo
	branch := func(name string) map[string]any {
		return map[string]any{"label": r.owner + ":" + name, "ref": name, "sha": r.refs["refs/heads/"+name],
			"repo": q.repoJSON(r), "user": map[string]any{"login": r.owner}}
	}
	html := fmt.Sprintf("https://github.com/%s/pull/%d", r.full(), pr.Number)
	return map[string]any{
		"id": pr.ID, "node_id": fmt.Sprintf("PR_fake%d", pr.ID), "number": pr.Number,
		"url":      q.repoURL(fmt.Sprintf("/pulls/%d", pr.Number)),
		"html_url": html, "diff_url": html + ".diff", "state": pr.State, "locked": false,
		"title": pr.Title, "body": pr.Body, "draft": pr.Draft, "user": q.botJSON(pr.AppID),
		"created_at": timeJSON(pr.CreatedAt), "updated_at": timeJSON(pr.UpdatedAt),
		"closed_at": timeJSON(pr.ClosedAt), "merged_at": nil, "merged": false,
		"head": branch(pr.Head), "base": branch(pr.Base),
	}
}

func (q *request) reviewJSON(rv *Review) map[string]any {
	pr := fmt.Sprintf("https://github.com/%s/pull/%d", q.repo.full(), rv.Number)
	return map[string]any{
		"id": rv.ID, "node_id": fmt.Sprintf("PRR_fake%d", rv.ID), "user": q.botJSON(rv.AppID), "body": rv.Body,
		"state": rv.State, "commit_id": rv.CommitID,
		"html_url":         fmt.Sprintf("%s#pullrequestreview-%d", pr, rv.ID),
		"pull_request_url": q.repoURL(fmt.Sprintf("/pulls/%d", rv.Number)),
		"submitted_at":     timeJSON(q.f.now()),
	}
}
