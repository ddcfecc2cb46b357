package runs

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// product-demo: a model-driven walkthrough of a deployed URL, one chapter per story.
// For each story the model (the play model, through the edge's model gateway) sees
// the page — URL, title, visible text, interactive elements — and answers with one
// action a turn (navigate, click, type) until it calls finish with a verdict and a
// narrative. The first page is recorded as rrweb events; the recording is uploaded
// with a replay page (the replay artifact, served by the edge), the key screenshot of
// each chapter as screenshots, and the summary compares each chapter with the
// previous execution for the repository. A story that breaks (the model errs, an
// action fails too often, time runs out) is a failed chapter, never a crashed run: the
// run is red only when every chapter failed.

// Story is one chapter's instructions.
type Story struct {
	Name  string `json:"name"`
	Prose string `json:"prose"`
}

// ProductDemoInputs are product-demo's inputs.
type ProductDemoInputs struct {
	Repo                   string  `json:"repo"`
	SHA                    string  `json:"sha,omitempty"`
	DeployedURL            string  `json:"deployedUrl"`
	Stories                []Story `json:"stories,omitzero"`
	StoriesMarkdown        string  `json:"storiesMarkdown,omitempty"` // each "## " heading is a story
	ViewportPreset         string  `json:"viewportPreset,omitempty"`  // desktop (default) | mobile
	MaxDurationSecPerStory int     `json:"maxDurationSecPerStory,omitempty"`
	MaxTurnsPerStory       int     `json:"maxTurnsPerStory,omitempty"`
	ReportOnly             bool    `json:"reportOnly,omitempty"`
}

// StoryResult is one chapter.
type StoryResult struct {
	Name             string `json:"name"`
	Status           string `json:"status"` // passed | failed
	DurationMs       int64  `json:"durationMs"`
	ChapterStartMs   int64  `json:"chapterStartMs"` // from the recording's start
	ChapterEndMs     int64  `json:"chapterEndMs"`
	Turns            int    `json:"turns"`
	Narrative        string `json:"narrative"`
	Error            string `json:"error,omitempty"`
	KeyScreenshotURI string `json:"keyScreenshotUri,omitempty"`
	ReplayURI        string `json:"replayUri,omitempty"`
	ReplayJSONURI    string `json:"replayJsonUri,omitempty"`
	StartedAtMs      int64  `json:"startedAtMs"` // epoch ms, to place the chapter in the recording
	EndedAtMs        int64  `json:"endedAtMs"`
}

// ProductDemoOutput is product-demo's output.
type ProductDemoOutput struct {
	DeployedURL    string        `json:"deployedUrl"`
	Stories        []StoryResult `json:"stories"`
	Passed         int           `json:"passed"`
	Failed         int           `json:"failed"`
	ReplayURI      string        `json:"replayUri,omitempty"`
	ReplayJSONURI  string        `json:"replayJsonUri,omitempty"`
	ScreenshotsURI string        `json:"screenshotsUri,omitempty"`
	Frames         int           `json:"frames"`
	Prior          string        `json:"priorExecutionId,omitempty"`
	Narrative      string        `json:"narrative,omitempty"` // the summary model's, or a fallback
	SummaryMd      string        `json:"summaryMd"`
}

// Limits and configuration of product-demo.
const (
	demoDefaultStorySec    = 180
	demoMaxStorySec        = 900
	demoDefaultTurns       = 15
	demoMaxTurns           = 50
	demoMaxStories         = 20
	demoMaxStrikes         = 3 // consecutive turns without a usable action
	demoPlayModelKey       = "product-demo.model.play"
	demoSummaryModelKey    = "product-demo.model.summary"
	demoReplayArtifact     = "replay"
	demoScreenshotArtifact = "screenshots"
)

// Default fills the defaults and turns the markdown into stories.
func (in *ProductDemoInputs) Default() {
	if in.MaxDurationSecPerStory == 0 {
		in.MaxDurationSecPerStory = demoDefaultStorySec
	}
	if in.MaxTurnsPerStory == 0 {
		in.MaxTurnsPerStory = demoDefaultTurns
	}
	if in.ViewportPreset == "" {
		in.ViewportPreset = "desktop"
	}
	if len(in.Stories) == 0 && in.StoriesMarkdown != "" {
		in.Stories = StoriesFromMarkdown(in.StoriesMarkdown)
		in.StoriesMarkdown = ""
	}
	if in.Stories == nil {
		in.Stories = []Story{}
	}
	in.SHA = strings.ToLower(in.SHA)
}

// StoriesFromMarkdown reads one story per level-2 heading: the heading is its name,
// the text up to the next level-2 heading its prose; anything before the first is
// ignored.
func StoriesFromMarkdown(md string) []Story {
	var out []Story
	var cur *Story
	fence := false
	for _, line := range strings.Split(strings.ReplaceAll(md, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
		}
		if !fence && strings.HasPrefix(line, "## ") {
			out = append(out, Story{Name: strings.TrimSpace(strings.TrimRight(strings.TrimSpace(line[3:]), "#"))})
			cur = &out[len(out)-1]
			continue
		}
		if cur != nil {
			cur.Prose += line + "\n"
		}
	}
	for i := range out {
		out[i].Prose = strings.TrimSpace(out[i].Prose)
	}
	return out
}

// Validate checks the inputs' values; duplicate story names are refused (400).
func (in *ProductDemoInputs) Validate() error {
	if fe := validateRepo("repo", in.Repo); fe != nil {
		return fe
	}
	if in.SHA != "" && !hexSHA(in.SHA) {
		return &dsl.FieldError{Field: "sha", Message: "must be a commit SHA (7 to 64 hex digits)"}
	}
	if fe := checkHTTPURL("deployedUrl", in.DeployedURL); fe != nil {
		return fe
	}
	switch {
	case len(in.Stories) == 0:
		return &dsl.FieldError{Field: "stories", Message: "no stories: give stories, or storiesMarkdown with ## headings"}
	case len(in.Stories) > demoMaxStories:
		return &dsl.FieldError{Field: "stories", Message: fmt.Sprintf("at most %d stories", demoMaxStories)}
	case in.ViewportPreset != "desktop" && in.ViewportPreset != "mobile":
		return &dsl.FieldError{Field: "viewportPreset", Message: `must be "desktop" or "mobile"`}
	case in.MaxDurationSecPerStory < 10 || in.MaxDurationSecPerStory > demoMaxStorySec:
		return &dsl.FieldError{Field: "maxDurationSecPerStory", Message: fmt.Sprintf("must be between 10 and %d", demoMaxStorySec)}
	case in.MaxTurnsPerStory < 1 || in.MaxTurnsPerStory > demoMaxTurns:
		return &dsl.FieldError{Field: "maxTurnsPerStory", Message: fmt.Sprintf("must be between 1 and %d", demoMaxTurns)}
	}
	seen := map[string]int{}
	for i, s := range in.Stories {
		field := fieldIndex("stories", i)
		switch {
		case strings.TrimSpace(s.Name) == "":
			return &dsl.FieldError{Field: field + ".name", Message: "must not be empty"}
		case strings.TrimSpace(s.Prose) == "":
			return &dsl.FieldError{Field: field + ".prose", Message: "must not be empty"}
		}
		if j, dup := seen[strings.ToLower(s.Name)]; dup {
			return &dsl.FieldError{Field: field + ".name", Message: fmt.Sprintf("duplicate story name %q (also stories[%d])", s.Name, j)}
		}
		seen[strings.ToLower(s.Name)] = i
	}
	return nil
}

//go:embed replay
var replayFiles embed.FS

// ProductDemo is the product-demo run.
var ProductDemo = dsl.Define(dsl.Spec{
	Name:        "product-demo",
	Version:     "1.0.0",
	Description: "Walk through a deployed URL story by story with a model, record it, and compare with the last walkthrough.",
	Pool:        dsl.PoolBrowser,
	MaxDuration: 3600 * time.Second,
}, func(c *dsl.Ctx, in ProductDemoInputs) (ProductDemoOutput, error) {
	models, err := demoModels(c)
	if err != nil {
		return ProductDemoOutput{}, err
	}
	vp := dsl.ViewportDesktop
	if in.ViewportPreset == "mobile" {
		vp = dsl.ViewportMobile
	}
	sess, err := openBrowser(c, dsl.SessionOptions{Viewport: vp, Record: true})
	if err != nil {
		return ProductDemoOutput{}, err
	}
	defer sess.Close(context.WithoutCancel(c))

	shots := map[string][]byte{}
	results := make([]StoryResult, 0, len(in.Stories))
	for i, story := range in.Stories {
		shotName := fmt.Sprintf("%02d-%s.png", i+1, slug(story.Name))
		r, err := dsl.Step(c, fmt.Sprintf("play-%d", i+1), func(ctx context.Context) (StoryResult, error) {
			r, shot := playStory(ctx, c, sess.Page(), models.play, in, story)
			if shot != nil {
				shots[shotName] = shot
				r.KeyScreenshotURI = shotName // made absolute once uploaded
			}
			return r, nil
		}, dsl.Timeout(time.Duration(in.MaxDurationSecPerStory+60)*time.Second))
		if err != nil {
			return ProductDemoOutput{}, err
		}
		results = append(results, r)
	}

	events, err := sess.Recording(c)
	if err != nil {
		return ProductDemoOutput{}, err
	}
	out := ProductDemoOutput{DeployedURL: in.DeployedURL, Frames: countFrames(events)}
	var t0 int64
	if len(events) > 0 {
		var first struct {
			Timestamp int64 `json:"timestamp"`
		}
		_ = json.Unmarshal(events[0], &first)
		t0 = first.Timestamp
	}
	chapters := make([]map[string]any, 0, len(results))
	for i := range results {
		r := &results[i]
		if t0 > 0 && r.StartedAtMs > 0 {
			r.ChapterStartMs, r.ChapterEndMs = max(0, r.StartedAtMs-t0), max(0, r.EndedAtMs-t0)
		}
		chapters = append(chapters, map[string]any{"name": r.Name, "status": r.Status, "startMs": r.ChapterStartMs, "endMs": r.ChapterEndMs})
	}
	replay, err := dsl.UploadData(c, "upload-replay", demoReplayArtifact, replayBundle(events, chapters))
	if err != nil {
		return ProductDemoOutput{}, err
	}
	if replay.URL != "" {
		out.ReplayURI, out.ReplayJSONURI = dirURL(replay), dirURL(replay)+"events.json"
	}
	if len(shots) > 0 {
		a, err := dsl.UploadData(c, "upload-screenshots", demoScreenshotArtifact, shots)
		if err != nil {
			return ProductDemoOutput{}, err
		}
		out.ScreenshotsURI = dirURL(a)
	}
	for i := range results {
		r := &results[i]
		if r.KeyScreenshotURI != "" && out.ScreenshotsURI != "" && !strings.Contains(r.KeyScreenshotURI, "/") {
			r.KeyScreenshotURI = out.ScreenshotsURI + r.KeyScreenshotURI
		}
		r.ReplayURI, r.ReplayJSONURI = out.ReplayURI, out.ReplayJSONURI
		if r.Status == "passed" {
			out.Passed++
		} else {
			out.Failed++
		}
	}
	out.Stories = results

	prior, err := dsl.Step(c, "load-prior", func(ctx context.Context) (priorDemo, error) {
		return loadPriorDemo(ctx, c, in)
	}, dsl.Retries(1))
	if err != nil {
		return ProductDemoOutput{}, err
	}
	out.Prior = prior.Exec
	narrative, err := dsl.Step(c, "summarize", func(ctx context.Context) (string, error) {
		return summarizeDemo(ctx, c, models.summary, out, prior), nil
	})
	if err != nil {
		return ProductDemoOutput{}, err
	}
	out.Narrative = narrative
	out.SummaryMd = demoSummary(out, prior)
	if out.Passed == 0 && !in.ReportOnly {
		return out, &dsl.AcceptanceFailed{ExitCode: 1, SummaryMd: out.SummaryMd}
	}
	return out, nil
})

type demoModelNames struct{ play, summary string }

// demoModels reads the two required models; without them (or without a model
// gateway) the run cannot start: *dsl.BackendUnconfigured names what is missing.
func demoModels(c *dsl.Ctx) (demoModelNames, error) {
	keys := []string{demoPlayModelKey, demoSummaryModelKey}
	vals := map[string]string{}
	if c.Config != nil {
		v, err := c.Config.Get(c, keys)
		if err != nil {
			return demoModelNames{}, err
		}
		vals = v
	}
	var missing []string
	for _, k := range keys {
		if strings.TrimSpace(vals[k]) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return demoModelNames{}, &dsl.BackendUnconfigured{Backend: "product-demo", Missing: missing}
	}
	if c.Model == nil {
		return demoModelNames{}, &dsl.BackendUnconfigured{Backend: "model gateway", Missing: []string{"this platform has no model gateway"}}
	}
	return demoModelNames{play: strings.TrimSpace(vals[demoPlayModelKey]), summary: strings.TrimSpace(vals[demoSummaryModelKey])}, nil
}

// The tools the play model acts with.
var demoTools = []dsl.ModelTool{
	{Name: "navigate", Description: "Load a URL in the page.", Schema: json.RawMessage(`{"type":"object","properties":{"url":{"type":"string"}},"required":["url"]}`)},
	{Name: "click", Description: "Click an element, by the ref the page description gives.", Schema: json.RawMessage(`{"type":"object","properties":{"ref":{"type":"string"}},"required":["ref"]}`)},
	{Name: "type", Description: "Type text into an input, by its ref (replaces its value).", Schema: json.RawMessage(`{"type":"object","properties":{"ref":{"type":"string"},"text":{"type":"string"}},"required":["ref","text"]}`)},
	{Name: "finish", Description: "End the story: passed when it could be done as written, failed otherwise, with a short narrative of what happened.",
		Schema: json.RawMessage(`{"type":"object","properties":{"status":{"type":"string","enum":["passed","failed"]},"narrative":{"type":"string"}},"required":["status","narrative"]}`)},
}

const demoSystem = `You demonstrate a web product by following a user story in a real browser.
Each turn you get the story, the page (URL, title, visible text, interactive elements with refs) and what you did so far.
Call exactly one tool per turn: navigate, click, type, or finish when the story is done (passed) or cannot be done (failed).
Use only refs from the current page description.`

// playStory plays one story; whatever goes wrong becomes a failed chapter.
func playStory(ctx context.Context, c *dsl.Ctx, pg dsl.BrowserPage, model string, in ProductDemoInputs, story Story) (StoryResult, []byte) {
	start := now(c)
	r := StoryResult{Name: story.Name, Status: "failed", StartedAtMs: start.UnixMilli()}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(in.MaxDurationSecPerStory)*time.Second)
	defer cancel()
	finish := func(status, narrative, errText string) (StoryResult, []byte) {
		r.Status, r.Narrative, r.Error = status, clipString(narrative, 2000), clipString(errText, 1000)
		shotCtx, cancelShot := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancelShot()
		shot, _ := pg.Screenshot(shotCtx)
		end := now(c)
		r.EndedAtMs, r.DurationMs = end.UnixMilli(), end.Sub(start).Milliseconds()
		return r, shot
	}
	if err := pg.Navigate(ctx, in.DeployedURL); err != nil {
		return finish("failed", "", "the deployed URL did not load: "+err.Error())
	}
	var history []string
	strikes := 0
	for r.Turns < in.MaxTurnsPerStory {
		if ctx.Err() != nil {
			return finish("failed", "", fmt.Sprintf("the story ran out of time (%d s)", in.MaxDurationSecPerStory))
		}
		r.Turns++
		snap, err := pg.Snapshot(ctx)
		if err != nil {
			return finish("failed", "", "the page could not be read: "+err.Error())
		}
		resp, err := c.Model.Complete(ctx, dsl.ModelRequest{Model: model, System: demoSystem, User: demoPrompt(story, snap, history), Tools: demoTools, MaxTokens: 1024})
		if err != nil {
			var mf *dsl.ModelCallFailed
			if errors.As(err, &mf) {
				return finish("failed", "", "the model failed: "+mf.Error())
			}
			return finish("failed", "", "the model failed: "+err.Error())
		}
		if len(resp.ToolCalls) == 0 {
			strikes++
			history = append(history, "(no tool called: call exactly one tool)")
			if strikes >= demoMaxStrikes {
				return finish("failed", resp.Text, "the model stopped calling tools")
			}
			continue
		}
		call := resp.ToolCalls[0]
		var args struct {
			URL, Ref, Text, Status, Narrative string
		}
		if err := json.Unmarshal(call.Arguments, &args); err != nil {
			strikes++
			history = append(history, fmt.Sprintf("%s: arguments did not parse (%v)", call.Name, err))
			if strikes >= demoMaxStrikes {
				return finish("failed", "", "the model's tool arguments did not parse")
			}
			continue
		}
		var actErr error
		switch call.Name {
		case "finish":
			status := "failed"
			if args.Status == "passed" {
				status = "passed"
			}
			return finish(status, args.Narrative, "")
		case "navigate":
			actErr = pg.Navigate(ctx, sameSiteURL(in.DeployedURL, args.URL))
		case "click":
			actErr = pg.Click(ctx, args.Ref)
		case "type":
			actErr = pg.Type(ctx, args.Ref, args.Text)
		default:
			actErr = fmt.Errorf("unknown tool %q", call.Name)
		}
		line := fmt.Sprintf("%s %s", call.Name, clipString(string(call.Arguments), 200))
		if actErr != nil {
			strikes++
			history = append(history, line+" → error: "+clipString(actErr.Error(), 300))
			if strikes >= demoMaxStrikes {
				return finish("failed", "", "actions kept failing: "+actErr.Error())
			}
			continue
		}
		strikes = 0
		history = append(history, line+" → ok")
	}
	return finish("failed", "", fmt.Sprintf("the story did not finish in %d turns", in.MaxTurnsPerStory))
}

// sameSiteURL resolves a URL the model gave against the deployed URL.
func sameSiteURL(base, u string) string {
	b, err := url.Parse(base)
	if err != nil {
		return u
	}
	ref, err := url.Parse(u)
	if err != nil {
		return base
	}
	return b.ResolveReference(ref).String()
}

func demoPrompt(story Story, snap dsl.PageSnapshot, history []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Story: %s\n%s\n\nPage: %s\nTitle: %s\n\nVisible text:\n%s\n\nElements:\n", story.Name, story.Prose, snap.URL, snap.Title, clipString(snap.Text, 4000))
	for _, e := range snap.Elements {
		fmt.Fprintf(&b, "- ref=%s %s", e.Ref, e.Tag)
		if e.Role != "" {
			fmt.Fprintf(&b, " role=%s", e.Role)
		}
		fmt.Fprintf(&b, " %q\n", e.Name)
	}
	if len(history) > 0 {
		b.WriteString("\nSo far:\n")
		for i, h := range history {
			fmt.Fprintf(&b, "%d. %s\n", i+1, h)
		}
	}
	return b.String()
}

// replayBundle is the replay artifact: the player and the recording.
func replayBundle(events []json.RawMessage, chapters []map[string]any) map[string][]byte {
	files := map[string][]byte{}
	_ = fs.WalkDir(replayFiles, "replay", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := replayFiles.ReadFile(p)
			files[strings.TrimPrefix(p, "replay/")] = b
		}
		return nil
	})
	if events == nil {
		events = []json.RawMessage{}
	}
	if chapters == nil {
		chapters = []map[string]any{}
	}
	files["events.json"], _ = json.Marshal(events)
	rec, _ := json.Marshal(map[string]any{"events": events, "chapters": chapters})
	files["recording.js"] = append(append([]byte("window.FLARE_REPLAY = "), rec...), ";\n"...)
	return files
}

// ReplayFiles is the replay page's files (index.html, player.js, player.css), for tests
// and the edge.
func ReplayFiles() map[string][]byte { return replayBundle(nil, nil) }

func countFrames(events []json.RawMessage) int {
	n := 0
	for _, e := range events {
		var ev struct {
			Type int `json:"type"`
		}
		if json.Unmarshal(e, &ev) == nil && ev.Type == 2 {
			n++
		}
	}
	return n
}

// priorDemo is the previous walkthrough of the repository's deployed URL.
type priorDemo struct {
	Exec    string            `json:"exec,omitempty"`
	Status  map[string]string `json:"status,omitempty"` // chapter → passed | failed
	Summary string            `json:"summary,omitempty"`
}

func loadPriorDemo(ctx context.Context, c *dsl.Ctx, in ProductDemoInputs) (priorDemo, error) {
	if c.IO == nil {
		return priorDemo{}, nil
	}
	family := "product-demo:" + strings.ReplaceAll(in.Repo, "/", "_")
	p, found, err := c.IO.PriorExecution(ctx, family)
	if err != nil || !found {
		return priorDemo{}, err
	}
	var o ProductDemoOutput
	if json.Unmarshal(p.Output, &o) != nil || o.DeployedURL != in.DeployedURL {
		return priorDemo{}, nil // another URL, or an output this version does not read
	}
	pd := priorDemo{Exec: p.Exec, Status: map[string]string{}}
	for _, s := range o.Stories {
		pd.Status[s.Name] = s.Status
	}
	return pd, nil
}

// summarizeDemo asks the summary model for a short narrative; any failure falls back
// to a plain sentence (the summary is never why a demo fails).
func summarizeDemo(ctx context.Context, c *dsl.Ctx, model string, o ProductDemoOutput, prior priorDemo) string {
	fallback := fmt.Sprintf("%d of %d chapters passed.", o.Passed, len(o.Stories))
	var b strings.Builder
	for _, s := range o.Stories {
		fmt.Fprintf(&b, "- %s: %s (before: %s). %s %s\n", s.Name, s.Status, orDash(prior.Status[s.Name]), s.Narrative, s.Error)
	}
	resp, err := c.Model.Complete(ctx, dsl.ModelRequest{Model: model, MaxTokens: 512,
		System: "Summarize a product walkthrough for a pull request check in three sentences at most. Mention regressions against the previous walkthrough.",
		User:   "Walkthrough of " + o.DeployedURL + ":\n" + b.String()})
	if err != nil || strings.TrimSpace(resp.Text) == "" {
		return fallback
	}
	return clipString(strings.TrimSpace(resp.Text), 2000)
}

func demoSummary(o ProductDemoOutput, prior priorDemo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Product demo: %d/%d chapters passed** on `%s`", o.Passed, len(o.Stories), strings.ReplaceAll(o.DeployedURL, "`", "'"))
	if o.ReplayURI != "" {
		fmt.Fprintf(&b, " — [▶ replay](%s)", o.ReplayURI)
	}
	b.WriteString("\n\n")
	if o.Narrative != "" {
		b.WriteString(mdCell(o.Narrative) + "\n\n")
	}
	b.WriteString("| Chapter | Result | Before | Turns | Duration | Screenshot | Narrative |\n|---|---|---|---:|---:|---|---|\n")
	for _, s := range o.Stories {
		result := "✅ passed"
		if s.Status != "passed" {
			result = "❌ failed"
		}
		before := "—"
		switch prior.Status[s.Name] {
		case "passed":
			before = "✅"
		case "failed":
			before = "❌"
		}
		if prior.Status[s.Name] == "passed" && s.Status != "passed" {
			result += " (regression)"
		}
		shot := "—"
		if strings.Contains(s.KeyScreenshotURI, "/") {
			shot = "[png](" + s.KeyScreenshotURI + ")"
		}
		text := s.Narrative
		if s.Error != "" {
			text = strings.TrimSpace(text + " " + s.Error)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %.1f s | %s | %s |\n", mdCell(s.Name), result, before, s.Turns, float64(s.DurationMs)/1000, shot, mdCell(text))
	}
	if prior.Exec != "" {
		fmt.Fprintf(&b, "\nCompared with execution `%s`.", strings.ReplaceAll(prior.Exec, "`", "'"))
	} else {
		b.WriteString("\nNo earlier walkthrough of this URL to compare with.")
	}
	return strings.TrimRight(b.String(), "\n")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// slug makes a story name safe in a file name.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			return strings.Trim(b.String(), "-")
		}
	}
	return strings.Trim(b.String(), "-")
}

// now is the run's clock (io.now), or the machine's.
func now(c *dsl.Ctx) time.Time {
	if c.IO != nil {
		return c.IO.Now()
	}
	return time.Now()
}
