package browserruns_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-rod/rod"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// scriptedModel plays stories by their name, looking at the page it is shown as a real
// model would (the refs it clicks come from the prompt):
//   - "About": click "About us", then finish passed once the page says "About the shop";
//   - "Basket": click "Add to basket", finish passed when the count is 1;
//   - "Unicorn": finish failed (the shop sells none);
//   - "Silent": never calls a tool (three strikes: failed);
//
// and answers the summary model with a sentence.
type scriptedModel struct {
	mu    sync.Mutex
	calls []dsl.ModelRequest
}

func (m *scriptedModel) Complete(_ context.Context, r dsl.ModelRequest) (dsl.ModelResponse, error) {
	m.mu.Lock()
	m.calls = append(m.calls, r)
	m.mu.Unlock()
	if r.Model == "sum-1" {
		return dsl.ModelResponse{Text: "The shop demo ran; see the chapters."}, nil
	}
	call := func(name string, args any) (dsl.ModelResponse, error) {
		b, _ := json.Marshal(args)
		return dsl.ModelResponse{ToolCalls: []dsl.ModelToolCall{{Name: name, Arguments: b}}}, nil
	}
	ref := func(label string) string {
		for _, line := range strings.Split(r.User, "\n") {
			if strings.HasPrefix(line, "- ref=") && strings.HasSuffix(line, strconv.Quote(label)) {
				return strings.Fields(strings.TrimPrefix(line, "- ref="))[0]
			}
		}
		return "#missing"
	}
	story := strings.TrimPrefix(strings.SplitN(r.User, "\n", 2)[0], "Story: ")
	switch story {
	case "About":
		if strings.Contains(r.User, "About the shop") {
			return call("finish", map[string]string{"status": "passed", "narrative": "Opened the about page."})
		}
		return call("click", map[string]string{"ref": ref("About us")})
	case "Basket":
		if strings.Contains(r.User, "Count: 1") {
			return call("finish", map[string]string{"status": "passed", "narrative": "Added one item."})
		}
		return call("click", map[string]string{"ref": ref("Add to basket")})
	case "Unicorn":
		return call("finish", map[string]string{"status": "failed", "narrative": "There are no unicorns for sale."})
	}
	return dsl.ModelResponse{Text: "I would rather chat."}, nil
}

// io is the clock and the previous execution.
type demoIO struct {
	prior *dsl.PriorExecution
}

func (demoIO) Now() time.Time       { return time.Now() }
func (demoIO) NewID() string        { return "id" }
func (demoIO) Getenv(string) string { return "" }
func (d demoIO) PriorExecution(_ context.Context, family string) (dsl.PriorExecution, bool, error) {
	if d.prior == nil || !strings.HasPrefix(d.prior.Exec, family+":") {
		return dsl.PriorExecution{}, false, nil
	}
	return *d.prior, true, nil
}

func TestProductDemoWalksStoriesRecordsAndReplays(t *testing.T) {
	needNode(t)
	w := newWorld(t)
	repo, _ := fixtureRepo(t, "app")
	site := startApp(t, repo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := dsltest.Config{"product-demo.model.play": "play-1", "product-demo.model.summary": "sum-1"}
	md := "# Shop demo\nPreamble is ignored.\n\n## About\nOpen the about page.\n\n## Basket\nPut one item in the basket.\n\n## Unicorn\nBuy a unicorn.\n\n## Silent\nSay nothing.\n"

	run := func(exec string, inputs string, prior *dsl.PriorExecution) (json.RawMessage, error) {
		norm, err := runs.ProductDemo.DecodeInputs(json.RawMessage(inputs))
		if err != nil {
			t.Fatal(err)
		}
		e := w.execution(ctx, exec, "product-demo", "acme/shop")
		e.c.Config, e.c.Model, e.c.IO = cfg, &scriptedModel{}, demoIO{prior: prior}
		return runs.ProductDemo.Execute(e.c, norm)
	}
	in, _ := json.Marshal(map[string]any{"repo": "acme/shop", "deployedUrl": site + "/", "storiesMarkdown": md, "maxDurationSecPerStory": 60})
	raw, err := run("product-demo:acme_shop:aaaaaaaaaaaa", string(in), nil)
	if err != nil {
		t.Fatalf("two of four chapters passed, yet: %v", err) // red only when every chapter failed
	}
	out := decode[runs.ProductDemoOutput](t, raw)
	got := map[string]string{}
	for _, s := range out.Stories {
		got[s.Name] = s.Status
	}
	if out.Passed != 2 || out.Failed != 2 || got["About"] != "passed" || got["Basket"] != "passed" || got["Unicorn"] != "failed" || got["Silent"] != "failed" {
		t.Fatalf("chapters %+v", out.Stories)
	}
	for _, want := range []string{"**Product demo: 2/4 chapters passed**", "[▶ replay](" + w.origin + "/v1/artifacts/product-demo:acme_shop:aaaaaaaaaaaa/replay/)",
		"| About | ✅ passed |", "| Unicorn | ❌ failed |", "the model stopped calling tools", "The shop demo ran", "No earlier walkthrough"} {
		if !strings.Contains(out.SummaryMd, want) {
			t.Fatalf("summary lacks %q:\n%s", want, out.SummaryMd)
		}
	}
	if st, body := fetch(t, out.Stories[0].KeyScreenshotURI); st != 200 || !strings.HasPrefix(body, "\x89PNG") {
		t.Fatalf("key screenshot %s: %d", out.Stories[0].KeyScreenshotURI, st)
	}
	if out.Stories[1].ChapterStartMs <= out.Stories[0].ChapterStartMs || out.Frames < 3 {
		t.Fatalf("chapters not placed in the recording: %+v, %d frames", out.Stories, out.Frames)
	}

	// The replay page, served by the edge, opened in chromium: it renders the frames of
	// the recording, and stepping through them reaches the about page.
	page := rod.New().ControlURL(chromiumtest.Endpoint(t)).Context(ctx).MustConnect().MustPage(out.ReplayURI)
	page.MustWaitLoad()
	frames := page.MustElement("body[data-frames]").MustAttribute("data-frames")
	if n, _ := strconv.Atoi(*frames); n != out.Frames || n < 3 {
		t.Fatalf("the replay page shows %s frames, the run recorded %d", *frames, out.Frames)
	}
	// The stage shows frame n once body[data-rendered=n] is there.
	stageText := func() string {
		n := *page.MustElement("body[data-frame]").MustAttribute("data-frame")
		page.Timeout(10 * time.Second).MustElement(`body[data-rendered="` + n + `"]`)
		return page.MustElement("#stage").MustFrame().MustElement("body").MustText()
	}
	if txt := stageText(); !strings.Contains(txt, "Fixture shop") {
		t.Fatalf("first frame shows %q", txt)
	}
	sawAbout := false
	for i := 0; i < out.Frames && !sawAbout; i++ {
		page.MustElement("#next").MustClick()
		sawAbout = strings.Contains(stageText(), "About the shop")
	}
	if !sawAbout {
		t.Fatal("no frame of the replay shows the about page")
	}
	if chapters := page.MustElements("#chapters a"); len(chapters) != 4 || !strings.Contains(chapters[0].MustText(), "About — passed") {
		t.Fatalf("chapter links %d", len(chapters))
	}

	// A second walkthrough compares with the first; every chapter failing is red.
	prior := &dsl.PriorExecution{Exec: "product-demo:acme_shop:aaaaaaaaaaaa", Status: "success", Output: raw}
	in, _ = json.Marshal(map[string]any{"repo": "acme/shop", "deployedUrl": site + "/", "maxDurationSecPerStory": 30,
		"stories": []runs.Story{{Name: "About", Prose: "x"}, {Name: "Unicorn", Prose: "y"}}})
	_, err = run("product-demo:acme_shop:bbbbbbbbbbbb", strings.Replace(string(in), `"About"`, `"Silent"`, 1), prior)
	var af *dsl.AcceptanceFailed
	if !errors.As(err, &af) || !strings.Contains(af.SummaryMd, "0/2 chapters passed") || !strings.Contains(af.SummaryMd, "Compared with execution `product-demo:acme_shop:aaaaaaaaaaaa`") {
		t.Fatalf("all chapters failed: want red with the comparison, got %v", err)
	}
	if !strings.Contains(af.SummaryMd, "| Unicorn | ❌ failed | ❌ |") {
		t.Fatalf("comparison column:\n%s", af.SummaryMd)
	}
}

func TestProductDemoRefusesDuplicateStoriesAndNeedsItsModels(t *testing.T) {
	_, err := runs.ProductDemo.DecodeInputs(json.RawMessage(`{"repo":"acme/shop","deployedUrl":"https://shop.test","storiesMarkdown":"## Login\na\n## login\nb"}`))
	var fe *dsl.FieldError
	if !errors.As(err, &fe) || fe.Field != "stories[1].name" || !strings.Contains(fe.Message, "duplicate") {
		t.Fatalf("duplicate names: %v", err)
	}
	norm, err := runs.ProductDemo.DecodeInputs(json.RawMessage(`{"repo":"acme/shop","deployedUrl":"https://shop.test","stories":[{"name":"a","prose":"b"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c := &dsl.Ctx{Context: context.Background(), Exec: "pd-x", Attempt: 1, Run: "product-demo", Journal: dsltest.NewJournal(),
		Config: dsltest.Config{"product-demo.model.summary": "s"}, Model: &scriptedModel{}}
	_, err = runs.ProductDemo.Execute(c, norm)
	var bu *dsl.BackendUnconfigured
	if !errors.As(err, &bu) || len(bu.Missing) != 1 || bu.Missing[0] != "product-demo.model.play" {
		t.Fatalf("missing play model: %v", err)
	}
}
