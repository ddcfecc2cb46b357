package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// The local use: `flare run pr-review --repo . --base main` reviews the working
// branch through the embedded stack, with OPENAI_BASE_URL/OPENAI_API_KEY and --model
// selecting the backend (here the fake), and prints the review.
func TestRunPRReviewLocallyPrintsTheReview(t *testing.T) {
	w := gittest.Init(t)
	w.Commit("base", map[string]string{"calc/calc.go": "package calc\n\nfunc Add(a, b int) int { return a + b }\n"})
	w.Git("checkout", "-q", "-b", "feature")
	w.Commit("div", map[string]string{"calc/calc.go": "package calc\n\nfunc Add(a, b int) int { return a + b }\n\nfunc Div(a, b int) int { return a / b }\n"})

	f := fakeopenai.New("sk-local")
	defer f.Close()
	f.Respond(func(r fakeopenai.ChatRequest) fakeopenai.Reply {
		return fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report",
			Arguments: `{"findings":[{"level":"failure","title":"Div panics on zero","message":"Guard b == 0.","path":"calc/calc.go","startLine":5}]}`}}}
	})
	cmd := exec.Command(flareBin, "run", "pr-review", "--repo", w.Dir, "--base", "main", "--model", "gpt-fake", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), "OPENAI_BASE_URL="+f.URL, "OPENAI_API_KEY=sk-local")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	got := out.String()
	for _, want := range []string{"── review ──", "### AI code review — 🛑 Request changes", "Div panics on zero", "calc/calc.go:5", "<!-- flare-dispatch: pr-review -->"} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %q in:\n%s\nstderr:\n%s", want, got, errb.String())
		}
	}
	reqs := f.Requests()
	if len(reqs) != 1 || reqs[0].Body.Model != "gpt-fake" || !strings.Contains(reqs[0].Body.Prompt(), "func Div") {
		t.Fatalf("model calls %d", len(reqs))
	}
}
