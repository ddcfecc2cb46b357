package model_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge/model"
	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
)

var reportTool = dsl.ModelTool{Name: "report", Schema: json.RawMessage(`{"type":"object","properties":{"findings":{"type":"array"}}}`)}

// sleeps records the waits between attempts instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return nil
}

func gateway(t *testing.T, env model.Env) (*model.Gateway, *sleeps) {
	t.Helper()
	def, backends := model.Backends(env)
	g := model.New(http.DefaultClient, def, backends, map[string]model.Price{"gpt-fake": {InputPerMTok: 3, OutputPerMTok: 15}})
	s := &sleeps{}
	g.Sleep = s.sleep
	return g, s
}

func local(t *testing.T) (*fakeopenai.Server, *model.Gateway, *sleeps) {
	t.Helper()
	f := fakeopenai.New("sk-local")
	t.Cleanup(f.Close)
	g, s := gateway(t, model.Env{OpenAIBaseURL: f.URL, OpenAIKey: "sk-local", OpenAIModel: "gpt-fake"})
	return f, g, s
}

func reason(t *testing.T, err error) string {
	t.Helper()
	var f *dsl.ModelCallFailed
	if !errors.As(err, &f) {
		t.Fatalf("error %T %v is not a ModelCallFailed", err, err)
	}
	return f.Reason
}

func TestLocalOpenAIIsTheDefaultAndCostIsRecorded(t *testing.T) {
	f, g, _ := local(t)
	if g.Default() != model.OpenAI {
		t.Fatalf("default %s", g.Default())
	}
	f.Push(fakeopenai.Reply{Text: "fine", PromptTokens: 1000, CompletionTokens: 200})
	res, err := g.Complete(context.Background(), model.Request{System: "s", User: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != "fine" || res.Model != "gpt-fake" || res.InputTokens != 1000 || res.OutputTokens != 200 || res.Calls != 1 {
		t.Fatalf("%+v", res)
	}
	// 1000 × $3/M + 200 × $15/M = $0.006 = 6000 µ$.
	if res.CostMicroUSD != 6000 || res.CostBasis != "priced" {
		t.Fatalf("cost %d %s", res.CostMicroUSD, res.CostBasis)
	}
	if got := f.Requests()[0].Header.Get("Authorization"); got != "Bearer sk-local" {
		t.Fatalf("auth %q", got)
	}
}

func TestRoutesByPrefixThroughAIGateway(t *testing.T) {
	f := fakeopenai.New("")
	defer f.Close()
	g, _ := gateway(t, model.Env{AccountID: "acct", GatewayID: "gw", GatewayToken: "aig-tok", APIToken: "cf-tok", GatewayBase: f.URL})
	for _, c := range []struct{ model, path, sent, auth string }{
		{"@cf/meta/llama-3.3-70b", "/v1/acct/gw/workers-ai/v1/chat/completions", "@cf/meta/llama-3.3-70b", "Bearer cf-tok"},
		{"anthropic/claude-sonnet-4", "/v1/acct/gw/compat/chat/completions", "anthropic/claude-sonnet-4", ""},
		{"deepseek/deepseek-chat", "/v1/acct/gw/compat/chat/completions", "deepseek/deepseek-chat", ""},
	} {
		f.Push(fakeopenai.Reply{Text: `{"findings":[]}`})
		if _, err := g.Complete(context.Background(), model.Request{Model: c.model, User: "u"}); err != nil {
			t.Fatalf("%s: %v", c.model, err)
		}
		reqs := f.Requests()
		r := reqs[len(reqs)-1]
		if r.Path != c.path || r.Body.Model != c.sent || r.Header.Get("Authorization") != c.auth ||
			r.Header.Get("cf-aig-authorization") != "Bearer aig-tok" {
			t.Fatalf("%s: path %s model %s auth %q aig %q", c.model, r.Path, r.Body.Model, r.Header.Get("Authorization"), r.Header.Get("cf-aig-authorization"))
		}
	}
}

func TestUnconfiguredBackendNamesWhatIsMissing(t *testing.T) {
	g, _ := gateway(t, model.Env{})
	_, err := g.Complete(context.Background(), model.Request{Model: "anthropic/claude", User: "u"})
	var bu *dsl.BackendUnconfigured
	if !errors.As(err, &bu) || bu.Backend != "anthropic" || strings.Join(bu.Missing, ",") != "CLOUDFLARE_ACCOUNT_ID,AI_GATEWAY_ID,AI_GATEWAY_AUTH_TOKEN" {
		t.Fatalf("%v", err)
	}
	_, g2, _ := local(t)
	_, err = g2.Complete(context.Background(), model.Request{Backend: "openai", Model: "", User: "u"})
	if err != nil {
		t.Fatalf("default model: %v", err)
	}
	g3, _ := gateway(t, model.Env{AccountID: "a", APIToken: "t"})
	_, err = g3.Complete(context.Background(), model.Request{User: "u"})
	if !errors.As(err, &bu) || bu.Backend != "workers-ai" || bu.Missing[0] != "model" {
		t.Fatalf("no model: %v", err)
	}
}

func TestStructuredOutputByToolCall(t *testing.T) {
	f, g, _ := local(t)
	f.Push(fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report", Arguments: `{"findings":[{"title":"x"}]}`}}})
	res, err := g.Complete(context.Background(), model.Request{User: "u", Tools: []dsl.ModelTool{reportTool}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ToolCalls) != 1 || string(res.ToolCalls[0].Arguments) != `{"findings":[{"title":"x"}]}` || res.JSONFallback {
		t.Fatalf("%+v", res)
	}
	if names := f.Requests()[0].Body.ToolNames(); len(names) != 1 || names[0] != "report" {
		t.Fatalf("tools sent %v", names)
	}
}

// Contract §12 row 30: zero tool calls ⇒ one retry in json mode, whose answer may
// carry a reasoning block and a code fence.
func TestZeroToolCallsFallsBackToJSONModeOnce(t *testing.T) {
	f, g, _ := local(t)
	f.Push(fakeopenai.Reply{Text: "I think it is fine.", PromptTokens: 10, CompletionTokens: 5},
		fakeopenai.Reply{Text: "<think>hmm {no}</think>\n```json\n{\"findings\":[]}\n```", PromptTokens: 12, CompletionTokens: 6})
	res, err := g.Complete(context.Background(), model.Request{User: "u", Tools: []dsl.ModelTool{reportTool}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.JSONFallback || len(res.ToolCalls) != 1 || string(res.ToolCalls[0].Arguments) != `{"findings":[]}` {
		t.Fatalf("%+v", res)
	}
	if res.InputTokens != 22 || res.OutputTokens != 11 || res.Calls != 2 {
		t.Fatalf("tokens %d/%d calls %d", res.InputTokens, res.OutputTokens, res.Calls)
	}
	second := f.Requests()[1].Body
	if second.ResponseFormat == nil || second.ResponseFormat.Type != "json_object" || len(second.Tools) != 0 ||
		!strings.Contains(second.Prompt(), `"findings"`) {
		t.Fatalf("json retry %+v", second)
	}
	f.Push(fakeopenai.Reply{Text: "no"}, fakeopenai.Reply{Text: "still no json"})
	_, err = g.Complete(context.Background(), model.Request{User: "u", Tools: []dsl.ModelTool{reportTool}})
	var so *dsl.StructuredOutputInvalid
	if !errors.As(err, &so) || so.Surface != "report" {
		t.Fatalf("%v", err)
	}
}

func TestJSONModeBackendsSkipTools(t *testing.T) {
	f := fakeopenai.New("")
	defer f.Close()
	g, _ := gateway(t, model.Env{AccountID: "acct", GatewayID: "gw", GatewayToken: "t", GatewayBase: f.URL})
	f.Push(fakeopenai.Reply{Text: `{"findings":[]}`})
	res, err := g.Complete(context.Background(), model.Request{Model: "deepseek/deepseek-chat", User: "u", Tools: []dsl.ModelTool{reportTool}})
	if err != nil || len(res.ToolCalls) != 1 || res.Calls != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	if b := f.Requests()[0].Body; len(b.Tools) != 0 || b.ResponseFormat == nil {
		t.Fatalf("deepseek request %+v", b)
	}
}

func TestTypedFailuresAndRetries(t *testing.T) {
	cases := []struct {
		name    string
		replies []fakeopenai.Reply
		key     string
		window  int
		reason  string // "" = success
		calls   int
		waits   []time.Duration
	}{
		{name: "bad key is auth-failed, not retried", key: "wrong", reason: model.ReasonAuth, calls: 1},
		{name: "429 waits Retry-After then succeeds", replies: []fakeopenai.Reply{{Status: 429, RetryAfter: "2"}, {Text: "ok"}},
			calls: 2, waits: []time.Duration{2 * time.Second}},
		{name: "429 with a long Retry-After fails at once", replies: []fakeopenai.Reply{{Status: 429, RetryAfter: "120"}},
			reason: model.ReasonRateLimited, calls: 1},
		{name: "500 is retried with backoff, then unavailable", replies: []fakeopenai.Reply{{Status: 500}, {Status: 502}, {Status: 500}},
			reason: model.ReasonUnavailable, calls: 3, waits: []time.Duration{time.Second, 2 * time.Second}},
		{name: "malformed JSON is retried once", replies: []fakeopenai.Reply{{RawBody: `{"choices":[`}, {Text: "ok"}}, calls: 2,
			waits: []time.Duration{0}},
		{name: "malformed JSON twice is bad-response", replies: []fakeopenai.Reply{{RawBody: `{"choices":[`}, {RawBody: `nope`}},
			reason: model.ReasonBadResponse, calls: 2, waits: []time.Duration{0}},
		{name: "context overflow is not retried", window: 5, reason: model.ReasonContextOverflow, calls: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, g, s := local(t)
			f.SetContextWindow(c.window)
			f.Push(c.replies...)
			req := model.Request{User: strings.Repeat("diff ", 20)}
			if c.key != "" {
				_, backends := model.Backends(model.Env{OpenAIBaseURL: f.URL, OpenAIKey: c.key, OpenAIModel: "m"})
				g = model.New(http.DefaultClient, model.OpenAI, backends, nil)
				g.Sleep = s.sleep
			}
			res, err := g.Complete(context.Background(), req)
			if c.reason == "" && err != nil {
				t.Fatalf("err %v", err)
			}
			if c.reason != "" && reason(t, err) != c.reason {
				t.Fatalf("reason %s want %s (%v)", reason(t, err), c.reason, err)
			}
			if got := len(f.Requests()); got != c.calls || res.Calls != c.calls {
				t.Fatalf("calls %d (result says %d), want %d", got, res.Calls, c.calls)
			}
			if len(s.d) != len(c.waits) {
				t.Fatalf("waits %v want %v", s.d, c.waits)
			}
			for i := range s.d {
				if s.d[i] != c.waits[i] {
					t.Fatalf("waits %v want %v", s.d, c.waits)
				}
			}
		})
	}
}

func TestSlowAnswerIsATimeout(t *testing.T) {
	f, g, _ := local(t)
	f.SetLatency(5 * time.Second)
	g.AttemptTimeout = 50 * time.Millisecond
	g.Attempts = 1
	_, err := g.Complete(context.Background(), model.Request{User: "u"})
	if reason(t, err) != model.ReasonTimeout {
		t.Fatal(err)
	}
}
