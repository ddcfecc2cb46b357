package prreview_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge/model"
	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
	"github.com/flare-dispatch/flare-dispatch/runs/prreview"
)

// BenchmarkSevenPersonaReview is a full-tier review (seven reviewers) through the real
// gateway against the fake model at a fixed 200 ms latency: with the reviewers in
// parallel a review takes about one latency, not seven. It reports the tokens sent
// per review (the diff goes to every reviewer).
//
//	go test -run '^$' -bench SevenPersona -benchtime 20x ./runs/prreview/
func BenchmarkSevenPersonaReview(b *testing.B) { benchReview(b, true) }

// BenchmarkSevenPersonaReviewOneByOne is the same review with the reviewers called one
// after another: the baseline the parallel review is compared with.
func BenchmarkSevenPersonaReviewOneByOne(b *testing.B) { benchReview(b, false) }

func benchReview(b *testing.B, parallel bool) {
	f := fakeopenai.New("k")
	defer f.Close()
	f.SetLatency(200 * time.Millisecond)
	f.Respond(func(fakeopenai.ChatRequest) fakeopenai.Reply {
		return fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report",
			Arguments: `{"findings":[{"level":"warning","title":"t","message":"m","path":"server/handler.go","startLine":14}]}`}}}
	})
	def, backends := model.Backends(model.Env{OpenAIBaseURL: f.URL, OpenAIKey: "k", OpenAIModel: "gpt-fake"})
	gw := model.DSL{G: model.New(http.DefaultClient, def, backends, nil)}
	w, base, head := pr(b)
	p := prreview.Prepare(diff(b, w, base, head), 60000)
	agents := prreview.Agents(p.Tier, "multi")
	if len(agents) != 7 {
		b.Fatalf("tier %s: %d agents", p.Tier, len(agents))
	}
	var in, out int
	b.ResetTimer()
	for b.Loop() {
		in, out = 0, 0
		groups := [][]string{agents}
		if !parallel {
			groups = nil
			for _, a := range agents {
				groups = append(groups, []string{a})
			}
		}
		for _, g := range groups {
			r, err := prreview.Review(context.Background(), gw, dsl.ModelRequest{MaxTokens: 4096}, g, prreview.Prompt{}, p.Diff)
			if err != nil {
				b.Fatal(err)
			}
			in, out = in+r.InputTokens, out+r.OutputTokens
		}
	}
	b.ReportMetric(float64(in), "tokens-sent/review")
	b.ReportMetric(float64(out), "tokens-received/review")
	b.ReportMetric(float64(len(p.Diff)), "diff-chars")
}
