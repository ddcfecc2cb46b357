package fakeopenai_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
	openai "github.com/sashabaranov/go-openai"
)

// The fake is checked with go-openai, a client the project did not write: what it
// parses, the real endpoints send.

func client(s *fakeopenai.Server, key string) *openai.Client {
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL = s.URL
	return openai.NewClientWithConfig(cfg)
}

func req(stream bool) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{Model: "m", Stream: stream,
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "review this"}},
		Tools: []openai.Tool{{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "report",
			Parameters: map[string]any{"type": "object"}}}}}
}

func TestToolCallsAndUsage(t *testing.T) {
	s := fakeopenai.New("k")
	defer s.Close()
	s.Push(fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report", Arguments: `{"findings":[]}`}}, PromptTokens: 12, CompletionTokens: 5})
	resp, err := client(s, "k").CreateChatCompletion(context.Background(), req(false))
	if err != nil {
		t.Fatal(err)
	}
	tc := resp.Choices[0].Message.ToolCalls
	if len(tc) != 1 || tc[0].Function.Name != "report" || tc[0].Function.Arguments != `{"findings":[]}` {
		t.Fatalf("tool calls %+v", tc)
	}
	if resp.Usage.PromptTokens != 12 || resp.Usage.CompletionTokens != 5 || resp.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("usage %+v finish %s", resp.Usage, resp.Choices[0].FinishReason)
	}
	got := s.Requests()
	if len(got) != 1 || got[0].Body.ToolNames()[0] != "report" || !strings.Contains(got[0].Body.Prompt(), "review this") {
		t.Fatalf("recorded %+v", got)
	}
}

func TestStreamingAssemblesTextToolCallsAndUsage(t *testing.T) {
	s := fakeopenai.New("")
	defer s.Close()
	s.Push(fakeopenai.Reply{Text: "hello there, reviewer", ToolCalls: []fakeopenai.ToolCall{{Name: "report", Arguments: `{"findings":[{"a":1}]}`}}})
	r := req(true)
	r.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	st, err := client(s, "any").CreateChatCompletionStream(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var text, args, name, finish string
	var usage *openai.Usage
	for {
		c, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Usage != nil {
			usage = c.Usage
		}
		for _, ch := range c.Choices {
			text += ch.Delta.Content
			for _, tc := range ch.Delta.ToolCalls {
				name += tc.Function.Name
				args += tc.Function.Arguments
			}
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
	}
	if text != "hello there, reviewer" || name != "report" || args != `{"findings":[{"a":1}]}` || finish != "tool_calls" {
		t.Fatalf("text %q name %q args %q finish %q", text, name, args, finish)
	}
	if usage == nil || usage.PromptTokens == 0 || usage.CompletionTokens == 0 {
		t.Fatalf("usage %+v", usage)
	}
}

func TestFailuresOnDemand(t *testing.T) {
	s := fakeopenai.New("k")
	defer s.Close()
	s.SetContextWindow(50)
	cases := []struct {
		name   string
		key    string
		reply  *fakeopenai.Reply
		prompt string
		status int
		code   string
	}{
		{name: "bad key", key: "wrong", status: 401, code: "invalid_api_key"},
		{name: "rate limited", key: "k", reply: &fakeopenai.Reply{Status: 429, RetryAfter: "7"}, status: 429},
		{name: "server error", key: "k", reply: &fakeopenai.Reply{Status: 500}, status: 500},
		{name: "context overflow", key: "k", prompt: strings.Repeat("x", 400), status: 400, code: "context_length_exceeded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.reply != nil {
				s.Push(*c.reply)
			}
			r := req(false)
			if c.prompt != "" {
				r.Messages[0].Content = c.prompt
			}
			_, err := client(s, c.key).CreateChatCompletion(context.Background(), r)
			var apiErr *openai.APIError
			if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != c.status {
				t.Fatalf("err %v", err)
			}
			if c.code != "" && apiErr.Code != c.code {
				t.Fatalf("code %v", apiErr.Code)
			}
		})
	}
}

func TestRetryAfterHeaderAndMalformedBody(t *testing.T) {
	s := fakeopenai.New("")
	defer s.Close()
	s.Push(fakeopenai.Reply{Status: 429, RetryAfter: "3"}, fakeopenai.Reply{RawBody: `{"choices": [`})
	post := func() *http.Response {
		resp, err := http.Post(s.URL+"/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	r := post()
	r.Body.Close()
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "3" {
		t.Fatalf("%d %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	_, err := client(s, "").CreateChatCompletion(context.Background(), req(false))
	if err == nil {
		t.Fatal("malformed body decoded")
	}
}
