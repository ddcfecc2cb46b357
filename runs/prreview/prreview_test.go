package prreview_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs/prreview"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const handlerV1 = `package server

import (
	"database/sql"
	"net/http"
)

// Handler serves users.
type Handler struct{ DB *sql.DB }

func (h *Handler) User(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	row := h.DB.QueryRow("SELECT name FROM users WHERE id = ?", id)
	var name string
	if err := row.Scan(&name); err != nil {
		http.Error(w, "not found", 404)
		return
	}
	w.Write([]byte(name))
}
`

const handlerV2 = `package server

import (
	"database/sql"
	"fmt"
	"net/http"
)

// Handler serves users.
type Handler struct{ DB *sql.DB }

func (h *Handler) User(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	row := h.DB.QueryRow(fmt.Sprintf("SELECT name FROM users WHERE id = '%s'", id))
	var name string
	if err := row.Scan(&name); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Write([]byte(name))
}

func (h *Handler) Users(w http.ResponseWriter, r *http.Request) {
	rows, _ := h.DB.Query("SELECT name FROM users")
	for rows.Next() {
		var name string
		rows.Scan(&name)
		fmt.Fprintln(w, name)
	}
}
`

// pr makes a repository whose feature branch left main, then main moved on; it
// returns the work tree, main's and the feature's commits.
func pr(t testing.TB) (*gittest.Work, string, string) {
	w := gittest.Init(t)
	w.Commit("base", map[string]string{"server/handler.go": handlerV1, "README.md": "# svc\n"})
	w.Git("checkout", "-q", "-b", "feature")
	head := w.Commit("feature", map[string]string{
		"server/handler.go":         handlerV2,
		"package-lock.json":         `{"lockfileVersion": 3}` + "\n",
		"dist/app.js":               "console.log(1)\n",
		"web/app.min.js":            "!function(){}();\n",
		"api/types.generated.ts":    "export type A = 1;\n",
		"migrations/0002_users.sql": "ALTER TABLE users ADD COLUMN email TEXT;\n",
	})
	w.Git("checkout", "-q", "main")
	base := w.Commit("main moves on", map[string]string{"README.md": "# svc\n\nmain changed this after the branch.\n"})
	return w, base, head
}

func diff(t testing.TB, w *gittest.Work, base, head string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", prreview.DiffCommand(base, head))
	cmd.Dir = w.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return string(out)
}

func TestThreeDotDiffWithoutNoise(t *testing.T) {
	w, base, head := pr(t)
	p := prreview.Prepare(diff(t, w, base, head), 0)
	if strings.Join(p.Files, ",") != "migrations/0002_users.sql,server/handler.go" {
		t.Fatalf("reviewed %v (README changed on main only: a three-dot diff leaves it out)", p.Files)
	}
	if strings.Join(p.Dropped, ",") != "api/types.generated.ts,dist/app.js,package-lock.json,web/app.min.js" {
		t.Fatalf("dropped %v", p.Dropped)
	}
	if strings.Contains(p.Diff, "lockfileVersion") || p.Truncated || p.Tier != prreview.TierFull {
		t.Fatalf("tier %s truncated %v\n%s", p.Tier, p.Truncated, p.Diff)
	}
}

func TestOversizedDiffIsCutWithTheMarker(t *testing.T) {
	w, base, head := pr(t)
	full := diff(t, w, base, head)
	p := prreview.Prepare(full, 600)
	if !p.Truncated || !strings.HasSuffix(p.Diff, prreview.TruncationMarker(600)) || len(p.Diff) > 600+len(prreview.TruncationMarker(600)) {
		t.Fatalf("truncated %v len %d\n%s", p.Truncated, len(p.Diff), p.Diff)
	}
	if p.FullChars <= 600 {
		t.Fatalf("full size %d", p.FullChars)
	}
}

// Contract §12 row 28: infra/ touched ⇒ seven reviewers; ≤25 changed lines ⇒
// code-quality only; agents=single ⇒ general.
func TestTieringRows(t *testing.T) {
	lines := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		return b.String()
	}
	cases := []struct {
		name   string
		files  map[string]string
		mode   string
		tier   string
		agents int
	}{
		{"infra touched, one line", map[string]string{"infra/main.tf": "x\n"}, "multi", prreview.TierFull, 7},
		{"workflow touched", map[string]string{".github/workflows/ci.yml": "on: push\n"}, "multi", prreview.TierFull, 7},
		{"25 lines", map[string]string{"src/a.go": lines(25)}, "multi", prreview.TierTrivial, 1},
		{"26 lines", map[string]string{"src/a.go": lines(26)}, "multi", prreview.TierLite, 4},
		{"201 lines", map[string]string{"src/a.go": lines(201)}, "multi", prreview.TierFull, 7},
		{"single mode", map[string]string{"infra/main.tf": "x\n"}, "single", prreview.TierFull, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := gittest.Init(t)
			base := w.Commit("base", map[string]string{"keep": "k\n"})
			head := w.Commit("change", c.files)
			p := prreview.Prepare(diff(t, w, base, head), 0)
			agents := prreview.Agents(p.Tier, c.mode)
			if p.Tier != c.tier || len(agents) != c.agents {
				t.Fatalf("tier %s agents %v", p.Tier, agents)
			}
			if c.agents == 1 && c.mode != "single" && agents[0] != prreview.CodeQuality {
				t.Fatalf("trivial agents %v", agents)
			}
			if c.mode == "single" && agents[0] != prreview.General {
				t.Fatalf("single agents %v", agents)
			}
		})
	}
}

// scripted is a model gateway that answers each reviewer from a table.
type scripted struct {
	mu       sync.Mutex
	findings map[string]string // agent → report arguments
	fail     map[string]error
	requests []dsl.ModelRequest
	overflow int // diffs longer than this overflow the context
}

func (s *scripted) Complete(_ context.Context, r dsl.ModelRequest) (dsl.ModelResponse, error) {
	s.mu.Lock()
	s.requests = append(s.requests, r)
	s.mu.Unlock()
	if s.overflow > 0 && len(r.User) > s.overflow {
		return dsl.ModelResponse{InputTokens: 0}, &dsl.ModelCallFailed{Reason: "context-overflow", Message: "too long"}
	}
	for _, a := range append(prreview.Personas, prreview.General) {
		if !strings.Contains(r.System, "Your area: "+focusWord(a)) {
			continue
		}
		if err := s.fail[a]; err != nil {
			return dsl.ModelResponse{}, err
		}
		args := s.findings[a]
		if args == "" {
			args = `{"findings":[]}`
		}
		return dsl.ModelResponse{ToolCalls: []dsl.ModelToolCall{{Name: "report", Arguments: json.RawMessage(args)}},
			InputTokens: len(r.System+r.User) / 4, OutputTokens: len(args) / 4}, nil
	}
	return dsl.ModelResponse{}, fmt.Errorf("no reviewer area in the system prompt")
}

func focusWord(agent string) string {
	switch agent {
	case prreview.CodeQuality:
		return "code quality"
	case prreview.ReleaseManagement:
		return "release management"
	case prreview.AgentsMD:
		return "instructions for AI agents"
	case prreview.General:
		return "correctness"
	}
	return agent
}

func reviewOf(t *testing.T, s *scripted, d string, mode string) (prreview.Prepared, prreview.Reviews, prreview.Outcome) {
	t.Helper()
	p := prreview.Prepare(d, 60000)
	r, err := prreview.Review(context.Background(), s, dsl.ModelRequest{Model: "gpt-fake", MaxTokens: 4096},
		prreview.Agents(p.Tier, mode), prreview.Prompt{Guidelines: "Prefer early returns."}, p.Diff)
	if err != nil {
		t.Fatal(err)
	}
	return p, r, prreview.Coordinate(r, p.Tier)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Fatalf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var threeFindings = map[string]string{
	prreview.Security: `{"findings":[{"level":"failure","title":"SQL injection through the id parameter","message":"The query is built with fmt.Sprintf from a request parameter. Use a placeholder: QueryRow(\"... WHERE id = ?\", id).","path":"server/handler.go","startLine":14}]}`,
	prreview.CodeQuality: `{"findings":[
		{"level":"warning","title":"Query error ignored","message":"The error of h.DB.Query is dropped; rows is nil on failure and rows.Next() panics.","path":"server/handler.go","startLine":25},
		{"level":"warning","title":"String concatenation in SQL","message":"Same as the injection above.","path":"server/handler.go","startLine":14,"endLine":14}]}`,
	prreview.Performance:   `{"findings":[{"level":"notice","title":"Rows never closed","message":"defer rows.Close() after checking the error, or the connection leaks.","path":"server/handler.go","startLine":27,"endLine":30}]}`,
	prreview.Documentation: `{"findings":[{"level":"notice","title":"Document Users","message":"Exported method Users has no comment.","path":"server/handler.go","startLine":23}]}`,
}

func TestGoldenCommentForARealDiff(t *testing.T) {
	w, base, head := pr(t)
	s := &scripted{findings: threeFindings}
	p, r, o := reviewOf(t, s, diff(t, w, base, head), "multi")
	if len(s.requests) != 7 {
		t.Fatalf("%d reviewer calls", len(s.requests))
	}
	// Dedup: code-quality's concatenation finding (line 14) overlaps security's
	// injection, which is kept, being more severe.
	if o.Verdict != prreview.RequestChanges || o.Critical != 1 || o.Warnings != 1 || o.Suggestions != 2 || len(o.Findings) != 4 {
		t.Fatalf("outcome %+v", o)
	}
	body := prreview.Render(prreview.CommentInput{Repo: "octo/svc", SHA: head, Outcome: o, Reviews: r, Prepared: p, MaxChars: 60000,
		LogsURL: "https://runs.example.com/logs/pr-review:octo_svc:abc?t=tok"})
	golden(t, "comment.golden.md", strings.ReplaceAll(body, head, "HEADSHA"))
	if !strings.HasSuffix(body, "\n"+prreview.Marker) {
		t.Fatal("the marker is not the last line")
	}
	if !strings.Contains(body, "https://github.com/octo/svc/blob/"+head+"/server/handler.go#L27-L30") {
		t.Fatal("no blob link with a line range")
	}
	for _, req := range s.requests {
		if !strings.Contains(req.System, "Prefer early returns.") || !strings.Contains(req.User, "fmt.Sprintf") ||
			strings.Contains(req.User, "lockfileVersion") || req.Model != "gpt-fake" || len(req.Tools) != 1 {
			t.Fatalf("request %+v", req)
		}
	}
	ann := prreview.Annotations(o)
	if len(ann) != len(o.Findings) || ann[0].Path != "server/handler.go" || ann[0].StartLine != 14 || ann[0].Level != "failure" {
		t.Fatalf("annotations %+v", ann)
	}
}

func TestCoordinationKeepsTheMostSevereOfOverlappingFindings(t *testing.T) {
	r := prreview.Reviews{Agents: []prreview.AgentResult{
		{Agent: "a", Findings: []prreview.Finding{{Level: "notice", Title: "x", Path: "f", StartLine: 10, EndLine: 12}}},
		{Agent: "b", Findings: []prreview.Finding{{Level: "failure", Title: "y", Path: "f", StartLine: 12}}},
		{Agent: "c", Findings: []prreview.Finding{{Level: "failure", Title: "z", Path: "f", StartLine: 11}, {Level: "warning", Title: "w", Path: "g", StartLine: 11}}},
	}}
	o := prreview.Coordinate(r, prreview.TierLite)
	if len(o.Findings) != 2 || o.Findings[0].Title != "y" || o.Findings[1].Title != "w" || o.Verdict != prreview.RequestChanges {
		t.Fatalf("%+v", o)
	}
	if o := prreview.Coordinate(prreview.Reviews{}, prreview.TierTrivial); o.Verdict != prreview.Approve {
		t.Fatalf("no findings: %s", o.Verdict)
	}
}

// Contract §12 row 32 and the list: a finding carrying a team mention, an
// image beacon, a script tag, backticks and a closing </details> renders inert.
func TestInjectionInFindingsRendersInert(t *testing.T) {
	evil := `{"findings":[{"level":"notice","title":"@org/team please look ![x](http://evil.example/beacon.png)",` +
		`"message":"<script>alert(1)</script> ` + "```" + `js\nfetch('//evil')\n` + "```" + ` </details> [click](http://evil.example) @user &lt;img src=x&gt; # Heading\n- list",` +
		`"path":"server/handler.go","startLine":3}]}`
	w, base, head := pr(t)
	s := &scripted{findings: map[string]string{prreview.General: evil}}
	p, r, o := reviewOf(t, s, diff(t, w, base, head), "single")
	body := prreview.Render(prreview.CommentInput{Repo: "octo/svc", SHA: head, Outcome: o, Reviews: r, Prepared: p})
	if n := strings.Count(body, "`"); n != 2 {
		t.Errorf("%d backticks: only the tier's two are the comment's own", n)
	}
	for _, bad := range []string{"@org", "@user", "![", "](http://evil", "<script", "</details>", "```", "<img", "&lt;img", "\n# Heading", "\n- list"} {
		if strings.Contains(body, bad) {
			t.Errorf("comment contains %q:\n%s", bad, body)
		}
	}
	if !strings.Contains(body, "@\u200borg/team") || !strings.Contains(body, "alert(1)") {
		t.Fatalf("text should stay readable:\n%s", body)
	}
	// The hidden state line is base64: model text never appears in an HTML comment.
	if strings.Count(body, "<!--") != 2 {
		t.Fatalf("expected the state and marker comments only:\n%s", body)
	}
}

func TestOverflowHalvesTheDiffWithTheMarker(t *testing.T) {
	w, base, head := pr(t)
	d := diff(t, w, base, head)
	p := prreview.Prepare(d, 0)
	s := &scripted{overflow: len(p.Diff) - 200}
	r, err := prreview.Review(context.Background(), s, dsl.ModelRequest{}, []string{prreview.CodeQuality}, prreview.Prompt{}, p.Diff)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Agents[0].Truncated || len(s.requests) != 2 || !strings.Contains(s.requests[1].User, "diff truncated at") {
		t.Fatalf("%+v %d", r.Agents[0], len(s.requests))
	}
}

func TestOneFailedReviewerIsShownAllFailedIsAnError(t *testing.T) {
	w, base, head := pr(t)
	d := diff(t, w, base, head)
	s := &scripted{fail: map[string]error{prreview.Security: &dsl.ModelCallFailed{Reason: "rate-limited", Message: "429"}}}
	p, r, o := reviewOf(t, s, d, "multi")
	body := prreview.Render(prreview.CommentInput{Repo: "o/r", SHA: head, Outcome: o, Reviews: r, Prepared: p})
	if !strings.Contains(body, "security ⚠️ failed") || !strings.Contains(body, "The security reviewer could not complete") {
		t.Fatal(body)
	}
	all := map[string]error{}
	for _, a := range prreview.Personas {
		all[a] = &dsl.ModelCallFailed{Reason: "auth-failed", Message: "401"}
	}
	_, err := prreview.Review(context.Background(), &scripted{fail: all}, dsl.ModelRequest{}, prreview.Personas, prreview.Prompt{}, d)
	if err == nil {
		t.Fatal("every reviewer failed, yet no error")
	}
}

func TestFailureCommentNamesTheKey(t *testing.T) {
	body := prreview.RenderFailure((&dsl.BackendUnconfigured{Backend: "anthropic", Missing: []string{"pr-review.anthropic.model"}}).Error(), "")
	if !strings.Contains(body, "pr-review could not complete") || !strings.Contains(body, "pr-review.anthropic.model") ||
		!strings.HasSuffix(body, prreview.Marker) {
		t.Fatal(body)
	}
}

func TestStateRoundTrips(t *testing.T) {
	fs := []prreview.Finding{{Level: "warning", Title: "t -->", Path: "a", StartLine: 3}}
	sha, got, ok := prreview.ParseState("x\n" + prreview.State("abc", fs) + "\n" + prreview.Marker)
	if !ok || sha != "abc" || len(got) != 1 || got[0].Title != "t -->" {
		t.Fatalf("%v %s %+v", ok, sha, got)
	}
	if _, _, ok := prreview.ParseState("no state"); ok {
		t.Fatal("state found in a body without one")
	}
}

// The re-review: of three findings, the next push fixes one, which shows as
// resolved; the others stay open (one re-reported, one carried although the model did
// not repeat it, its code untouched). The push after fixes the rest: back to approve.
func TestRereviewResolvesWhatThePushFixed(t *testing.T) {
	w, base, head1 := pr(t)
	first := &scripted{findings: map[string]string{
		prreview.Security:      threeFindings[prreview.Security],
		prreview.CodeQuality:   `{"findings":[{"level":"warning","title":"Query error ignored","message":"m","path":"server/handler.go","startLine":25}]}`,
		prreview.Documentation: threeFindings[prreview.Documentation],
	}}
	p1, r1, o1 := reviewOf(t, first, diff(t, w, base, head1), "multi")
	if len(o1.Findings) != 3 {
		t.Fatalf("first review %+v", o1.Findings)
	}
	comment1 := prreview.Render(prreview.CommentInput{Repo: "o/r", SHA: head1, Outcome: o1, Reviews: r1, Prepared: p1})

	// Push 2 fixes the injection on line 14 only.
	w.Git("checkout", "-q", "feature")
	head2 := w.Commit("use a placeholder", map[string]string{"server/handler.go": strings.Replace(handlerV2,
		`h.DB.QueryRow(fmt.Sprintf("SELECT name FROM users WHERE id = '%s'", id))`, `h.DB.QueryRow("SELECT name FROM users WHERE id = ?", id)`, 1)})
	second := &scripted{findings: map[string]string{
		prreview.CodeQuality: `{"findings":[{"level":"warning","title":"Query error is ignored","message":"still","path":"server/handler.go","startLine":25}]}`,
	}}
	p2, r2, current := reviewOf(t, second, diff(t, w, base, head2), "multi")
	priorSHA, prior, ok := prreview.ParseState(comment1)
	if !ok || priorSHA != head1 {
		t.Fatalf("state %v %s", ok, priorSHA)
	}
	o2 := prreview.Rereview(prior, current.Findings, prreview.SplitDiff(diff2(t, w, head1, head2)), true, p2.Tier)
	if len(o2.Resolved) != 1 || o2.Resolved[0].Title != "SQL injection through the id parameter" {
		t.Fatalf("resolved %+v", o2.Resolved)
	}
	if len(o2.Findings) != 2 || o2.Verdict != prreview.Comment {
		t.Fatalf("open %+v verdict %s", o2.Findings, o2.Verdict)
	}
	for _, f := range o2.Findings {
		if f.Status != prreview.StatusOpen {
			t.Fatalf("%+v should be carried as open", f)
		}
	}
	comment2 := prreview.Render(prreview.CommentInput{Repo: "o/r", SHA: head2, PriorSHA: head1, Outcome: o2, Reviews: r2, Prepared: p2})
	if !strings.Contains(comment2, "1 resolved · 2 still open · 0 new") || !strings.Contains(comment2, "~~SQL injection through the id parameter~~") {
		t.Fatal(comment2)
	}

	// Push 3 documents Users (a line inserted above it) and checks the query error.
	fixed := strings.Replace(strings.Replace(handlerV2, `h.DB.QueryRow(fmt.Sprintf("SELECT name FROM users WHERE id = '%s'", id))`,
		`h.DB.QueryRow("SELECT name FROM users WHERE id = ?", id)`, 1),
		"func (h *Handler) Users(w http.ResponseWriter, r *http.Request) {\n\trows, _ := h.DB.Query(\"SELECT name FROM users\")",
		"// Users lists every user.\nfunc (h *Handler) Users(w http.ResponseWriter, r *http.Request) {\n\trows, err := h.DB.Query(\"SELECT name FROM users\")\n\tif err != nil {\n\t\treturn\n\t}", 1)
	head3 := w.Commit("document and check", map[string]string{"server/handler.go": fixed})
	_, prior2, _ := prreview.ParseState(comment2)
	p3, _, current3 := reviewOf(t, &scripted{}, diff(t, w, base, head3), "multi")
	o3 := prreview.Rereview(prior2, current3.Findings, prreview.SplitDiff(diff2(t, w, head2, head3)), true, p3.Tier)
	if len(o3.Findings) != 0 || len(o3.Resolved) != 2 || o3.Verdict != prreview.Approve {
		t.Fatalf("third review %+v", o3)
	}
}

// A push that only moves a finding's lines (an insertion above it) carries the
// finding, at its new line, when the model does not repeat it.
func TestRereviewFollowsMovedLines(t *testing.T) {
	prior := []prreview.Finding{{Level: "warning", Title: "t", Path: "a.go", StartLine: 10, EndLine: 12}}
	push := prreview.SplitDiff("diff --git a/a.go b/a.go\n--- a/a.go\n+++ b/a.go\n@@ -2,0 +3,2 @@\n+x\n+y\n")
	o := prreview.Rereview(prior, nil, push, true, prreview.TierTrivial)
	if len(o.Findings) != 1 || o.Findings[0].StartLine != 12 || o.Findings[0].EndLine != 14 || o.Verdict != prreview.Comment {
		t.Fatalf("%+v", o)
	}
	// Unknown push (force push): what the model does not repeat is resolved.
	o = prreview.Rereview(prior, nil, nil, false, prreview.TierTrivial)
	if len(o.Resolved) != 1 || o.Verdict != prreview.Approve {
		t.Fatalf("%+v", o)
	}
}

func diff2(t *testing.T, w *gittest.Work, from, to string) string {
	t.Helper()
	return w.Git("diff", "--unified=3", "--no-color", from, to) + "\n"
}

// A model cannot raise the verdict with a word the schema does not have: unknown
// levels become notices, the usual synonyms map to the schema's levels.
func TestLevelsOutsideTheSchemaCannotRaiseTheVerdict(t *testing.T) {
	s := &scripted{findings: map[string]string{prreview.General: `{"findings":[
		{"level":"catastrophic","title":"a","message":"m","path":"f","startLine":1},
		{"level":"CRITICAL","title":"b","message":"m","path":"f","startLine":10},
		{"level":"warn","title":"c","message":"m","path":"f","startLine":20},
		{"level":"note","title":"","message":"","path":"f","startLine":30}]}`}}
	r, err := prreview.Review(context.Background(), s, dsl.ModelRequest{}, []string{prreview.General}, prreview.Prompt{}, "diff")
	if err != nil {
		t.Fatal(err)
	}
	got := r.Agents[0].Findings
	if len(got) != 3 || got[0].Level != "notice" || got[1].Level != "failure" || got[2].Level != "warning" {
		t.Fatalf("%+v", got)
	}
}
