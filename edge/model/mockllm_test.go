package model_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge/model"
)

// The gateway against an OpenAI-compatible server the project did not write:
// @dwmkerr/mock-llm from npm (testdata/mock-llm; `npm ci` there, which .ci/run does).
// Its rules answer a tool call for a review prompt, 429 for a rate-limit prompt, a
// JSON body that is no chat completion for another, and echo the rest.

const mockRules = `rules:
  - path: "/v1/chat/completions"
    method: "POST"
    match: "@"
    response:
      status: 200
      content: |
        {"id": "chatcmpl-{{timestamp}}", "object": "chat.completion", "model": "{{jmes request body.model}}",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "{{jmes request body.messages[-1].content}}"}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
  - path: "/v1/chat/completions"
    method: "POST"
    match: "contains(body.messages[-1].content, 'review')"
    response:
      status: 200
      content: |
        {"id": "chatcmpl-1", "object": "chat.completion", "model": "{{jmes request body.model}}",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
           "function": {"name": "report", "arguments": "{\"findings\":[{\"level\":\"warning\",\"title\":\"t\",\"message\":\"m\",\"path\":\"a.go\",\"startLine\":3}]}"}}]},
           "finish_reason": "tool_calls"}],
         "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}}
  - path: "/v1/chat/completions"
    method: "POST"
    match: "contains(body.messages[-1].content, 'slow down')"
    response:
      status: 429
      content: '{"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded", "code": null}}'
  - path: "/v1/chat/completions"
    method: "POST"
    match: "contains(body.messages[-1].content, 'garble')"
    response:
      status: 200
      content: '{"object": "list", "data": []}'
`

func mockLLM(t *testing.T) string {
	t.Helper()
	main, _ := filepath.Abs("testdata/mock-llm/node_modules/@dwmkerr/mock-llm/dist/main.js")
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(main); err != nil || statErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mock-llm needs node and `npm ci` in edge/model/testdata/mock-llm (node: %v, mock-llm: %v)", err, statErr)
		}
		t.Skip("mock-llm not installed: (cd edge/model/testdata/mock-llm && npm ci)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mock-llm.yaml")
	if err := os.WriteFile(cfg, []byte(mockRules), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(node, main, "--config", cfg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOST=127.0.0.1", "PORT="+itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "server running on") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("mock-llm exited before listening")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("mock-llm did not start in 60 s")
	}
	return "http://127.0.0.1:" + itoa(port) + "/v1"
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestGatewayAgainstMockLLM(t *testing.T) {
	base := mockLLM(t)
	def, backends := model.Backends(model.Env{OpenAIBaseURL: base, OpenAIKey: "sk-test", OpenAIModel: "gpt-4"})
	g := model.New(http.DefaultClient, def, backends, nil)
	s := &sleeps{}
	g.Sleep = s.sleep
	ctx := context.Background()

	res, err := g.Complete(ctx, model.Request{User: "hello there"})
	if err != nil || res.Text != "hello there" || res.InputTokens != 7 || res.OutputTokens != 3 || res.Model != "gpt-4" {
		t.Fatalf("echo: %+v %v", res, err)
	}
	res, err = g.Complete(ctx, model.Request{User: "please review", Tools: []dsl.ModelTool{reportTool}})
	if err != nil || len(res.ToolCalls) != 1 || !strings.Contains(string(res.ToolCalls[0].Arguments), `"startLine":3`) || res.InputTokens != 120 {
		t.Fatalf("tool call: %+v %v", res, err)
	}
	_, err = g.Complete(ctx, model.Request{User: "slow down"})
	if reason(t, err) != model.ReasonRateLimited || len(s.d) != 2 {
		t.Fatalf("429: %v after %d waits", err, len(s.d))
	}
	_, err = g.Complete(ctx, model.Request{User: "garble"})
	if reason(t, err) != model.ReasonBadResponse {
		t.Fatalf("malformed: %v", err)
	}
}
