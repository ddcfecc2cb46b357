// Package fakeopenai is an OpenAI-compatible chat completions server for tests:
// POST …/chat/completions with tool calls, streaming (server-sent events), usage
// tokens, scripted replies and the failures real endpoints send (401, 429 with
// Retry-After, 500, context-length 400, malformed JSON), at a configurable latency.
//
// Replies come from a script (a FIFO queue) or, when the queue is empty, from the
// Respond function (default: a short text). Every request is recorded, decoded, for assertions.
package fakeopenai

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Reply is one scripted answer. The zero Reply is a 200 with empty text.
type Reply struct {
	// Status is the HTTP status; 0 = 200. A status ≥ 400 answers with OpenAI's error
	// body ({"error":{"message","type","code"}}) built from ErrorMessage/ErrorCode.
	Status       int
	ErrorMessage string
	ErrorType    string
	ErrorCode    string
	RetryAfter   string // Retry-After header (429 and 503)

	// RawBody replaces the whole body (e.g. malformed JSON), sent with Status.
	RawBody string

	Text      string
	ToolCalls []ToolCall
	// PromptTokens and CompletionTokens override the usage counts (0 = estimated as
	// about four characters a token, like the real tokenizers on English and code).
	PromptTokens     int
	CompletionTokens int
	FinishReason     string        // "" = stop, or tool_calls when there are tool calls
	Latency          time.Duration // before the first byte; adds to Server.Latency
}

// ToolCall is one function call in a reply; Arguments is the JSON string the model
// produced (not necessarily valid JSON: that is the point of some tests).
type ToolCall struct {
	Name      string
	Arguments string
}

// Request is a recorded request.
type Request struct {
	Path   string
	Header http.Header
	Body   ChatRequest
	Raw    []byte
}

// ChatRequest is the part of a chat completions request the fake reads.
type ChatRequest struct {
	Model          string          `json:"model"`
	Messages       []Message       `json:"messages"`
	Tools          []Tool          `json:"tools,omitempty"`
	ToolChoice     json.RawMessage `json:"tool_choice,omitempty"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format,omitempty"`
	MaxTokens           int  `json:"max_tokens,omitempty"`
	MaxCompletionTokens int  `json:"max_completion_tokens,omitempty"`
	Stream              bool `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options,omitempty"`
}

// Message is a chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Tool is a function tool offered to the model.
type Tool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	} `json:"function"`
}

// ToolNames lists the offered tools' names.
func (r ChatRequest) ToolNames() []string {
	var n []string
	for _, t := range r.Tools {
		n = append(n, t.Function.Name)
	}
	return n
}

// Prompt is every message's content joined, for assertions on what was sent.
func (r ChatRequest) Prompt() string {
	var b strings.Builder
	for _, m := range r.Messages {
		b.WriteString(m.Content)
		b.WriteByte('\n')
	}
	return b.String()
}

// Server is the fake. Every method is safe to use while requests are served (a
// request may come from another process, which the race detector cannot see).
type Server struct {
	URL    string // base URL ending in /v1, as OPENAI_BASE_URL expects
	APIKey string // the bearer token accepted; "" accepts any

	srv           *httptest.Server
	mu            sync.Mutex
	script        []Reply
	requests      []Request
	latency       time.Duration
	contextWindow int
	respond       func(r ChatRequest) Reply
}

// SetLatency adds d to every reply (a fixed model latency for benchmarks).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetContextWindow makes requests whose estimated prompt tokens exceed n answer 400
// context_length_exceeded (0 = no limit).
func (s *Server) SetContextWindow(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.contextWindow = n
}

// Respond sets the answer given when the script is empty (default Reply{Text: "ok"}).
func (s *Server) Respond(fn func(r ChatRequest) Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respond = fn
}

// New starts a fake that accepts apiKey. Close stops it.
func New(apiKey string) *Server {
	s := &Server{APIKey: apiKey}
	mux := http.NewServeMux()
	// Any path ending in /chat/completions: gateways put the provider and account in
	// the path (…/compat/chat/completions, …/workers-ai/v1/chat/completions).
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			writeError(w, http.StatusNotFound, "Unknown request URL: "+r.Method+" "+r.URL.Path, "invalid_request_error", "unknown_url")
			return
		}
		s.chat(w, r)
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL + "/v1"
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Push appends replies to the script.
func (s *Server) Push(r ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, r...)
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Tokens estimates tokens as the fake counts them: a quarter of the bytes, at least 1.
func Tokens(s string) int { return max(1, (len(s)+3)/4) }

func (s *Server) next(req ChatRequest) Reply {
	s.mu.Lock()
	if len(s.script) > 0 {
		r := s.script[0]
		s.script = s.script[1:]
		s.mu.Unlock()
		return r
	}
	respond := s.respond
	s.mu.Unlock()
	if respond != nil {
		return respond(req)
	}
	return Reply{Text: "ok"}
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	raw, err := readAll(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "could not read body: "+err.Error(), "invalid_request_error", "")
		return
	}
	var req ChatRequest
	decodeErr := json.Unmarshal(raw, &req)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Path: r.URL.Path, Header: r.Header.Clone(), Body: req, Raw: raw})
	latency, window := s.latency, s.contextWindow
	s.mu.Unlock()

	if s.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+s.APIKey {
		writeError(w, http.StatusUnauthorized, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
		return
	}
	if decodeErr != nil {
		writeError(w, http.StatusBadRequest, "We could not parse the JSON body of your request.", "invalid_request_error", "")
		return
	}
	if req.Model == "" {
		writeError(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", "")
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "'messages' is a required property", "invalid_request_error", "")
		return
	}
	prompt := Tokens(req.Prompt())
	if window > 0 && prompt > window {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("This model's maximum context length is %d tokens. However, your messages resulted in %d tokens.",
			window, prompt), "invalid_request_error", "context_length_exceeded")
		return
	}

	rep := s.next(req)
	if d := latency + rep.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	status := rep.Status
	if status == 0 {
		status = http.StatusOK
	}
	if rep.RetryAfter != "" {
		w.Header().Set("Retry-After", rep.RetryAfter)
	}
	if rep.RawBody != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(rep.RawBody))
		return
	}
	if status >= 400 {
		msg, typ := rep.ErrorMessage, rep.ErrorType
		if msg == "" {
			msg = http.StatusText(status)
		}
		if typ == "" {
			typ = map[int]string{401: "invalid_request_error", 429: "rate_limit_exceeded"}[status]
			if typ == "" {
				typ = "server_error"
			}
		}
		writeError(w, status, msg, typ, rep.ErrorCode)
		return
	}
	if rep.PromptTokens == 0 {
		rep.PromptTokens = prompt
	}
	if rep.CompletionTokens == 0 {
		n := len(rep.Text)
		for _, tc := range rep.ToolCalls {
			n += len(tc.Name) + len(tc.Arguments)
		}
		rep.CompletionTokens = max(1, (n+3)/4)
	}
	if rep.FinishReason == "" {
		rep.FinishReason = "stop"
		if len(rep.ToolCalls) > 0 {
			rep.FinishReason = "tool_calls"
		}
	}
	if req.Stream {
		s.stream(w, req, rep)
		return
	}
	writeJSON(w, status, completion(req.Model, rep))
}

type toolCallJSON struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

func usage(rep Reply) map[string]int {
	return map[string]int{"prompt_tokens": rep.PromptTokens, "completion_tokens": rep.CompletionTokens,
		"total_tokens": rep.PromptTokens + rep.CompletionTokens}
}

func completion(model string, rep Reply) map[string]any {
	msg := map[string]any{"role": "assistant", "content": rep.Text}
	if len(rep.ToolCalls) > 0 {
		var calls []toolCallJSON
		for i, tc := range rep.ToolCalls {
			c := toolCallJSON{ID: fmt.Sprintf("call_%d", i), Type: "function"}
			c.Function.Name, c.Function.Arguments = tc.Name, tc.Arguments
			calls = append(calls, c)
		}
		msg["tool_calls"] = calls
		if rep.Text == "" {
			msg["content"] = nil
		}
	}
	return map[string]any{
		"id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": rep.FinishReason}},
		"usage":   usage(rep),
	}
}

// stream sends the reply as chat.completion.chunk events: the role, the text in a few
// pieces, each tool call's name then its arguments in two pieces, the finish reason,
// the usage chunk when asked for (stream_options.include_usage), then [DONE].
func (s *Server) stream(w http.ResponseWriter, req ChatRequest, rep Reply) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(delta map[string]any, finish any, u map[string]int) {
		chunk := map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": req.Model,
			"choices": []any{}}
		if delta != nil {
			chunk["choices"] = []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}
		}
		if u != nil {
			chunk["usage"] = u
		}
		b, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	send(map[string]any{"role": "assistant", "content": ""}, nil, nil)
	for _, piece := range split(rep.Text, 3) {
		send(map[string]any{"content": piece}, nil, nil)
	}
	for i, tc := range rep.ToolCalls {
		idx := i
		first := toolCallJSON{Index: &idx, ID: fmt.Sprintf("call_%d", i), Type: "function"}
		first.Function.Name = tc.Name
		send(map[string]any{"tool_calls": []toolCallJSON{first}}, nil, nil)
		for _, piece := range split(tc.Arguments, 2) {
			more := toolCallJSON{Index: &idx}
			more.Function.Arguments = piece
			send(map[string]any{"tool_calls": []toolCallJSON{more}}, nil, nil)
		}
	}
	send(map[string]any{}, rep.FinishReason, nil)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		send(nil, nil, usage(rep))
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

// split cuts s into at most n non-empty pieces.
func split(s string, n int) []string {
	if s == "" {
		return nil
	}
	size := max(1, (len(s)+n-1)/n)
	var out []string
	for len(s) > size {
		out = append(out, s[:size])
		s = s[size:]
	}
	return append(out, s)
}

func writeError(w http.ResponseWriter, status int, msg, typ, code string) {
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func readAll(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, 32<<20))
}
