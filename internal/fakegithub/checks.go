package fakegithub

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Check-run limits GitHub enforces.
const (
	MaxSummaryChars          = 65535 // output.summary and output.text, in characters
	MaxAnnotationsPerRequest = 50
	maxAnnotationDetails     = 64 * 1024
)

// CheckRun is a stored check-run.
type CheckRun struct {
	ID          int64
	Repo        string // owner/name
	AppID       int64
	Name        string
	HeadSHA     string
	Status      string // queued, in_progress, completed
	Conclusion  string
	DetailsURL  string
	ExternalID  string
	StartedAt   time.Time
	CompletedAt time.Time
	Title       string
	Summary     string
	Text        string
	Annotations []Annotation // appended across updates, as on GitHub
	Updates     int          // successful PATCHes
}

// Annotation is one check-run annotation.
type Annotation struct {
	Path                   string
	StartLine, EndLine     int
	StartColumn, EndColumn int
	Level                  string
	Message                string
	Title                  string
	RawDetails             string
}

// CheckRuns returns the repository's check-runs in creation order.
func (f *Fake) CheckRuns(repoName string) []CheckRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.mustRepo(repoName)
	out := make([]CheckRun, 0, len(r.checkOrder))
	for _, id := range r.checkOrder {
		out = append(out, r.checkRuns[id].clone())
	}
	return out
}

// CheckRun returns one check-run of the repository.
func (f *Fake) CheckRun(repoName string, id int64) (CheckRun, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cr := f.mustRepo(repoName).checkRuns[id]
	if cr == nil {
		return CheckRun{}, false
	}
	return cr.clone(), true
}

func (c *CheckRun) clone() CheckRun {
	out := *c
	out.Annotations = append([]Annotation(nil), c.Annotations...)
	return out
}

// checkRunBody is a create or update request. Pointers tell absent from empty.
type checkRunBody struct {
	Name        *string `json:"name"`
	HeadSHA     *string `json:"head_sha"`
	DetailsURL  *string `json:"details_url"`
	ExternalID  *string `json:"external_id"`
	Status      *string `json:"status"`
	Conclusion  *string `json:"conclusion"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
	Output      *struct {
		Title       *string          `json:"title"`
		Summary     *string          `json:"summary"`
		Text        *string          `json:"text"`
		Annotations []annotationBody `json:"annotations"`
		Images      []struct {
			Alt      string `json:"alt"`
			ImageURL string `json:"image_url"`
			Caption  string `json:"caption"`
		} `json:"images"`
	} `json:"output"`
	Actions []struct {
		Label       string `json:"label"`
		Description string `json:"description"`
		Identifier  string `json:"identifier"`
	} `json:"actions"`
}

type annotationBody struct {
	Path            string `json:"path"`
	StartLine       *int   `json:"start_line"`
	EndLine         *int   `json:"end_line"`
	StartColumn     *int   `json:"start_column"`
	EndColumn       *int   `json:"end_column"`
	AnnotationLevel string `json:"annotation_level"`
	Message         string `json:"message"`
	Title           string `json:"title"`
	RawDetails      string `json:"raw_details"`
}

var (
	checkStatuses    = map[string]bool{"queued": true, "in_progress": true, "completed": true}
	actionsStatuses  = map[string]bool{"waiting": true, "requested": true, "pending": true}
	checkConclusions = map[string]bool{"action_required": true, "cancelled": true, "failure": true, "neutral": true,
		"success": true, "skipped": true, "stale": true, "timed_out": true}
	annotationLevels = map[string]bool{"notice": true, "warning": true, "failure": true}
)

// checkRunProblem validates a create (cur == nil) or update of cur and
// returns GitHub's 422 message, or "".
func checkRunProblem(b *checkRunBody, cur *CheckRun) string {
	create := cur == nil
	missing := func(field string) string { return fmt.Sprintf("Invalid request.\n\n%q wasn't supplied.", field) }
	if create && (b.Name == nil || *b.Name == "") {
		return missing("name")
	}
	if !create && b.Name != nil && *b.Name == "" {
		return "Invalid request.\n\n\"name\" cannot be blank."
	}
	if create && (b.HeadSHA == nil || *b.HeadSHA == "") {
		return missing("head_sha")
	}
	if b.Status != nil {
		s := *b.Status
		if actionsStatuses[s] {
			return fmt.Sprintf("Invalid request.\n\nstatus %q can only be set by GitHub Actions.", s)
		}
		if !checkStatuses[s] {
			return fmt.Sprintf("Invalid request.\n\nFor 'properties/status', %q is not a possible value.", s)
		}
		if !create && cur.Status == "completed" && s != "completed" {
			return fmt.Sprintf("Invalid request.\n\nA completed check run cannot change status to %q.", s)
		}
	}
	if b.Conclusion != nil {
		c := *b.Conclusion
		if !checkConclusions[c] {
			return fmt.Sprintf("Invalid request.\n\nFor 'properties/conclusion', %q is not a possible value.", c)
		}
		if c == "stale" {
			return "Invalid request.\n\nconclusion \"stale\" can only be set by GitHub."
		}
		if b.Status != nil && *b.Status != "completed" {
			return fmt.Sprintf("Invalid request.\n\nconclusion cannot be set when status is %q.", *b.Status)
		}
	}
	alreadyDone := !create && cur.Conclusion != ""
	if b.Status != nil && *b.Status == "completed" && b.Conclusion == nil && !alreadyDone {
		return "Invalid request.\n\n\"conclusion\" is required when \"status\" is \"completed\"."
	}
	if b.CompletedAt != nil && b.Conclusion == nil && !alreadyDone {
		return "Invalid request.\n\n\"conclusion\" is required when \"completed_at\" is supplied."
	}
	for field, ts := range map[string]*string{"started_at": b.StartedAt, "completed_at": b.CompletedAt} {
		if ts != nil {
			if _, err := time.Parse(time.RFC3339, *ts); err != nil {
				return fmt.Sprintf("Invalid request.\n\n%q is not a valid ISO 8601 timestamp.", field)
			}
		}
	}
	if b.DetailsURL != nil && *b.DetailsURL != "" {
		u, err := url.Parse(*b.DetailsURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "Invalid request.\n\ndetails_url is not a valid URL."
		}
	}
	if b.Conclusion != nil && *b.Conclusion == "action_required" {
		if (b.DetailsURL == nil || *b.DetailsURL == "") && (create || cur.DetailsURL == "") {
			return "Invalid request.\n\n\"details_url\" is required when \"conclusion\" is \"action_required\"."
		}
	}
	if len(b.Actions) > 3 {
		return "Invalid request.\n\nOnly 3 actions are allowed."
	}
	for _, a := range b.Actions {
		if a.Label == "" || a.Description == "" || a.Identifier == "" ||
			utf8.RuneCountInString(a.Label) > 20 || utf8.RuneCountInString(a.Description) > 40 || utf8.RuneCountInString(a.Identifier) > 20 {
			return "Invalid request.\n\nactions need a label (≤20), description (≤40) and identifier (≤20)."
		}
	}
	if o := b.Output; o != nil {
		switch {
		case o.Title == nil:
			return missing("title")
		case o.Summary == nil:
			return missing("summary")
		}
		for field, s := range map[string]*string{"summary": o.Summary, "text": o.Text} {
			if s != nil && utf8.RuneCountInString(*s) > MaxSummaryChars {
				return fmt.Sprintf("Invalid request.\n\nOnly %d characters are allowed in output.%s; %d were supplied.",
					MaxSummaryChars, field, utf8.RuneCountInString(*s))
			}
		}
		if n := len(o.Annotations); n > MaxAnnotationsPerRequest {
			return fmt.Sprintf("Invalid request.\n\nOnly %d annotations are allowed per request; %d were supplied.", MaxAnnotationsPerRequest, n)
		}
		for i, a := range o.Annotations {
			if p := annotationProblem(a); p != "" {
				return fmt.Sprintf("Invalid request.\n\noutput.annotations[%d]: %s", i, p)
			}
		}
		for i, img := range o.Images {
			if img.Alt == "" || img.ImageURL == "" {
				return fmt.Sprintf("Invalid request.\n\noutput.images[%d] needs alt and image_url.", i)
			}
		}
	}
	return ""
}

func annotationProblem(a annotationBody) string {
	switch {
	case a.Path == "":
		return `"path" wasn't supplied.`
	case a.StartLine == nil:
		return `"start_line" wasn't supplied.`
	case a.EndLine == nil:
		return `"end_line" wasn't supplied.`
	case a.AnnotationLevel == "":
		return `"annotation_level" wasn't supplied.`
	case a.Message == "":
		return `"message" wasn't supplied.`
	case !annotationLevels[a.AnnotationLevel]:
		return fmt.Sprintf("annotation_level %q is not one of notice, warning, failure.", a.AnnotationLevel)
	case *a.StartLine < 1 || *a.EndLine < *a.StartLine:
		return fmt.Sprintf("lines %d-%d are not a valid range.", *a.StartLine, *a.EndLine)
	case (a.StartColumn != nil || a.EndColumn != nil) && *a.StartLine != *a.EndLine:
		return "start_column and end_column are only allowed when start_line equals end_line."
	case utf8.RuneCountInString(a.Title) > 255:
		return "title is longer than 255 characters."
	case len(a.Message) > maxAnnotationDetails || len(a.RawDetails) > maxAnnotationDetails:
		return "message and raw_details are limited to 64 KB."
	}
	return ""
}

// apply writes a validated body onto the run.
func (b *checkRunBody) apply(cr *CheckRun, now time.Time) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&cr.Name, b.Name)
	set(&cr.DetailsURL, b.DetailsURL)
	set(&cr.ExternalID, b.ExternalID)
	set(&cr.Status, b.Status)
	if b.StartedAt != nil {
		cr.StartedAt, _ = time.Parse(time.RFC3339, *b.StartedAt)
	}
	if b.Conclusion != nil {
		cr.Conclusion, cr.Status = *b.Conclusion, "completed"
	}
	if cr.Status == "completed" {
		switch {
		case b.CompletedAt != nil:
			cr.CompletedAt, _ = time.Parse(time.RFC3339, *b.CompletedAt)
		case cr.CompletedAt.IsZero() || b.Conclusion != nil:
			cr.CompletedAt = now
		}
	}
	if o := b.Output; o != nil {
		cr.Title, cr.Summary = *o.Title, *o.Summary
		set(&cr.Text, o.Text)
		for _, a := range o.Annotations {
			an := Annotation{Path: a.Path, StartLine: *a.StartLine, EndLine: *a.EndLine, Level: a.AnnotationLevel,
				Message: a.Message, Title: a.Title, RawDetails: a.RawDetails}
			if a.StartColumn != nil {
				an.StartColumn = *a.StartColumn
			}
			if a.EndColumn != nil {
				an.EndColumn = *a.EndColumn
			}
			cr.Annotations = append(cr.Annotations, an)
		}
	}
}

func (f *Fake) checkRoutes() {
	const docRuns = docRoot + "/checks/runs"
	f.handle("POST /repos/{owner}/{repo}/check-runs", authInst, "checks:write", docRuns+"#create-a-check-run", func(q *request) {
		doc := docRuns + "#create-a-check-run"
		var b checkRunBody
		if !q.decode(&b, doc) {
			return
		}
		if p := checkRunProblem(&b, nil); p != "" {
			q.error(http.StatusUnprocessableEntity, p, doc)
			return
		}
		r := q.repo
		sha := strings.ToLower(*b.HeadSHA)
		if o := r.objects[sha]; o == nil || o.typ != "commit" {
			q.error(http.StatusUnprocessableEntity, "No commit found for SHA: "+*b.HeadSHA, doc)
			return
		}
		now := q.f.now().UTC().Truncate(time.Second)
		cr := &CheckRun{ID: q.f.id(), Repo: r.full(), AppID: q.inst.appID, HeadSHA: sha, Status: "queued", StartedAt: now}
		b.apply(cr, now)
		r.checkRuns[cr.ID] = cr
		r.checkOrder = append(r.checkOrder, cr.ID)
		suite := fmt.Sprintf("%d:%s", cr.AppID, sha)
		if r.suites[suite] == 0 {
			r.suites[suite] = q.f.id()
		}
		q.json(http.StatusCreated, q.checkRunJSON(cr))
	})
	f.handle("PATCH /repos/{owner}/{repo}/check-runs/{id}", authInst, "checks:write", docRuns+"#update-a-check-run", func(q *request) {
		doc := docRuns + "#update-a-check-run"
		cr := q.checkRun()
		if cr == nil {
			q.notFound()
			return
		}
		if cr.AppID != q.inst.appID {
			q.error(http.StatusForbidden, msgNoAccess, doc)
			return
		}
		var b checkRunBody
		if !q.decode(&b, doc) {
			return
		}
		if p := checkRunProblem(&b, cr); p != "" {
			q.error(http.StatusUnprocessableEntity, p, doc)
			return
		}
		b.apply(cr, q.f.now().UTC().Truncate(time.Second))
		cr.Updates++
		q.json(http.StatusOK, q.checkRunJSON(cr))
	})
	f.handle("GET /repos/{owner}/{repo}/check-runs/{id}", authInst, "checks:read", docRuns+"#get-a-check-run", func(q *request) {
		cr := q.checkRun()
		if cr == nil {
			q.notFound()
			return
		}
		q.json(http.StatusOK, q.checkRunJSON(cr))
	})
	f.handle("GET /repos/{owner}/{repo}/check-runs/{id}/annotations", authInst, "checks:read", docRuns+"#list-check-run-annotations", func(q *request) {
		cr := q.checkRun()
		if cr == nil {
			q.notFound()
			return
		}
		items := make([]any, len(cr.Annotations))
		for i, a := range cr.Annotations {
			items[i] = map[string]any{"path": a.Path, "start_line": a.StartLine, "end_line": a.EndLine,
				"start_column": nilIfZero(a.StartColumn), "end_column": nilIfZero(a.EndColumn),
				"annotation_level": a.Level, "title": a.Title, "message": a.Message, "raw_details": a.RawDetails,
				"blob_href": fmt.Sprintf("https://github.com/%s/blob/%s/%s", cr.Repo, cr.HeadSHA, a.Path)}
		}
		q.paginate(items, nil)
	})
	f.handle("GET /repos/{owner}/{repo}/commits/{ref}/check-runs", authInst, "checks:read", docRuns+"#list-check-runs-for-a-git-reference", func(q *request) {
		r := q.repo
		sha := r.resolveCommit(q.r.PathValue("ref"))
		if sha == "" {
			q.error(http.StatusUnprocessableEntity, "No commit found for SHA: "+q.r.PathValue("ref"), docRuns)
			return
		}
		v := q.r.URL.Query()
		filter := v.Get("filter")
		if filter == "" {
			filter = "latest"
		}
		if filter != "latest" && filter != "all" {
			q.error(http.StatusUnprocessableEntity, fmt.Sprintf("Invalid request.\n\nFor 'filter', %q is not a possible value.", filter), docRuns)
			return
		}
		var runs []*CheckRun
		latest := map[string]int{} // name → index in runs
		for _, id := range r.checkOrder {
			cr := r.checkRuns[id]
			if cr.HeadSHA != sha || (v.Has("check_name") && cr.Name != v.Get("check_name")) ||
				(v.Has("status") && cr.Status != v.Get("status")) ||
				(v.Has("app_id") && strconv.FormatInt(cr.AppID, 10) != v.Get("app_id")) {
				continue
			}
			if i, ok := latest[cr.Name]; ok && filter == "latest" {
				runs[i] = cr
				continue
			}
			latest[cr.Name] = len(runs)
			runs = append(runs, cr)
		}
		items := make([]any, 0, len(runs))
		for i := len(runs) - 1; i >= 0; i-- { // newest first
			items = append(items, q.checkRunJSON(runs[i]))
		}
		q.paginate(items, func(page []any) any { return map[string]any{"total_count": len(items), "check_runs": page} })
	})
}

func nilIfZero(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// checkRun finds the {id} of the path in this repository only: a run of
// another repository is 404.
func (q *request) checkRun() *CheckRun {
	id, err := strconv.ParseInt(q.r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	return q.repo.checkRuns[id]
}

func (q *request) checkRunJSON(cr *CheckRun) map[string]any {
	app := q.f.apps[cr.AppID]
	var conclusion any
	if cr.Conclusion != "" {
		conclusion = cr.Conclusion
	}
	var details any
	if cr.DetailsURL != "" {
		details = cr.DetailsURL
	}
	var text any
	if cr.Text != "" {
		text = cr.Text
	}
	return map[string]any{
		"id": cr.ID, "node_id": fmt.Sprintf("CR_fake%d", cr.ID), "name": cr.Name, "head_sha": cr.HeadSHA,
		"external_id": cr.ExternalID, "url": q.repoURL(fmt.Sprintf("/check-runs/%d", cr.ID)),
		"html_url":    fmt.Sprintf("https://github.com/%s/runs/%d", cr.Repo, cr.ID),
		"details_url": details, "status": cr.Status, "conclusion": conclusion,
		"started_at": timeJSON(cr.StartedAt), "completed_at": timeJSON(cr.CompletedAt),
		"output": map[string]any{"title": cr.Title, "summary": cr.Summary, "text": text,
			"annotations_count": len(cr.Annotations),
			"annotations_url":   q.repoURL(fmt.Sprintf("/check-runs/%d/annotations", cr.ID))},
		"check_suite":   map[string]any{"id": q.repo.suites[fmt.Sprintf("%d:%s", cr.AppID, cr.HeadSHA)]},
		"app":           map[string]any{"id": app.ID, "slug": app.Slug, "name": app.Slug},
		"pull_requests": []any{},
	}
}
