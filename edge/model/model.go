// Package model is the edge's model gateway: every model call of every run goes
// through it, so model keys never reach a sandbox. It speaks the OpenAI chat
// completions protocol (github.com/sashabaranov/go-openai) to each backend:
//
//	workers-ai  @cf/…        Workers AI's OpenAI-compatible endpoint (through AI Gateway when AI_GATEWAY_ID is set)
//	anthropic   anthropic/…  AI Gateway's compat endpoint, provider key stored in the gateway (BYOK)
//	deepseek    deepseek/…   the same, json mode by default
//	bedrock     bedrock/…    AI Gateway's aws-bedrock route to Bedrock's OpenAI-compatible endpoint,
//	                         SigV4 with credentials from STS for an OIDC token the edge signs
//	openai      openai/… or a bare name: OPENAI_BASE_URL + OPENAI_API_KEY (local use)
//
// Failures are typed (*dsl.ModelCallFailed with reason auth-failed, rate-limited,
// bad-response, timeout, context-overflow, unavailable; *dsl.BackendUnconfigured
// naming what is missing), retried where a retry can help. Structured output goes
// through one tool call, with a json-mode retry when the model calls none. The
// package builds for js/wasm: HTTP goes through an injected Doer (the Worker's fetch).
package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	openai "github.com/sashabaranov/go-openai"
)

// Doer sends one HTTP request (an *http.Client natively, fetch in the Worker).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Backend names.
const (
	WorkersAI = "workers-ai"
	Anthropic = "anthropic"
	DeepSeek  = "deepseek"
	Bedrock   = "bedrock"
	OpenAI    = "openai"
)

// Failure reasons beyond the contract's auth-failed, rate-limited, bad-response,
// timeout and unknown.
const (
	ReasonAuth            = "auth-failed"
	ReasonRateLimited     = "rate-limited"
	ReasonBadResponse     = "bad-response"
	ReasonTimeout         = "timeout"
	ReasonContextOverflow = "context-overflow"
	ReasonUnavailable     = "unavailable" // 5xx or the network
)

// Request is one completion. Backend and Model may be empty: the backend then comes
// from the model's prefix, and then the gateway's default; the model from the
// backend's default.
type Request struct {
	Backend     string          `json:"backend,omitempty"`
	Model       string          `json:"model,omitempty"`
	System      string          `json:"system,omitempty"`
	User        string          `json:"user"`
	Tools       []dsl.ModelTool `json:"tools,omitempty"`
	MaxTokens   int             `json:"maxTokens,omitempty"`
	Temperature *float64        `json:"temperature,omitempty"`
	// JSON asks for json mode instead of a tool call (a backend may default to it).
	JSON bool `json:"json,omitempty"`
	// AWS selects the role Bedrock calls assume (per call; operator-trusted inputs).
	AWS *AWS `json:"aws,omitempty"`
	// Subject is the OIDC subject for Bedrock's role: "<run>:<execution>".
	Subject string `json:"subject,omitempty"`
}

// AWS is where Bedrock is reached and as whom.
type AWS struct {
	RoleArn string `json:"roleArn"`
	Region  string `json:"region,omitempty"` // default us-east-1
	Session string `json:"session,omitempty"`
}

// Result is the model's answer and what it cost.
type Result struct {
	Text         string              `json:"text,omitempty"`
	ToolCalls    []dsl.ModelToolCall `json:"toolCalls,omitempty"`
	Backend      string              `json:"backend"`
	Model        string              `json:"model"`
	InputTokens  int                 `json:"inputTokens"`
	OutputTokens int                 `json:"outputTokens"`
	CostMicroUSD int64               `json:"costMicroUsd"`
	CostBasis    string              `json:"costBasis"` // "priced" or "unpriced"
	Calls        int                 `json:"calls"`     // HTTP calls, retries included
	JSONFallback bool                `json:"jsonFallback,omitempty"`
}

// Backend is one OpenAI-compatible endpoint and how to authenticate to it.
type Backend struct {
	Name    string
	BaseURL string            // up to and without /chat/completions
	APIKey  string            // sent as a bearer token when set
	Header  map[string]string // extra headers (cf-aig-authorization)
	Model   string            // used when a request names none
	JSON    bool              // json mode by default (DeepSeek, Bedrock)
	// StripPrefix is removed from the model id before it is sent (bedrock/, openai/).
	StripPrefix string
	// Missing lists the configuration this backend lacks (it then answers
	// BackendUnconfigured naming them).
	Missing []string
	// bedrock is set on the bedrock backend: its requests are SigV4-signed.
	bedrock *bedrockRoute
}

// Price is what a model costs, in US dollars per million tokens.
type Price struct {
	InputPerMTok  float64 `json:"inputPerMTok"`
	OutputPerMTok float64 `json:"outputPerMTok"`
}

// Gateway routes requests to backends.
type Gateway struct {
	backends map[string]*Backend
	def      string
	doer     Doer
	prices   map[string]Price
	sts      *stsClient

	// Attempts bounds the HTTP calls per completion (default 3); AttemptTimeout bounds
	// each (default 2 minutes); MaxRetryAfter is the longest Retry-After waited for
	// (default 30 s; longer fails at once as rate-limited).
	Attempts       int
	AttemptTimeout time.Duration
	MaxRetryAfter  time.Duration
	// Sleep waits between attempts (tests replace it); Now is the clock.
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time
}

// New makes a gateway over backends; def is the backend used when a request names
// none and its model has no known prefix.
func New(doer Doer, def string, backends []*Backend, prices map[string]Price) *Gateway {
	g := &Gateway{backends: map[string]*Backend{}, def: def, doer: doer, prices: prices,
		Attempts: 3, AttemptTimeout: 2 * time.Minute, MaxRetryAfter: 30 * time.Second, Sleep: sleep, Now: time.Now}
	for _, b := range backends {
		g.backends[b.Name] = b
	}
	return g
}

// Default is the backend used when a request names none.
func (g *Gateway) Default() string { return g.def }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// route picks the backend of a request and the model id it sends upstream.
func (g *Gateway) route(r Request) (*Backend, string, error) {
	name := r.Backend
	if name == "" {
		name = BackendOf(r.Model)
	}
	if name == "" {
		name = g.def
	}
	b, ok := g.backends[name]
	if !ok {
		return nil, "", &dsl.BackendUnconfigured{Backend: name, Missing: []string{"a backend named " + strconv.Quote(name)}}
	}
	if len(b.Missing) > 0 {
		return nil, "", &dsl.BackendUnconfigured{Backend: name, Missing: b.Missing}
	}
	model := r.Model
	if model == "" {
		model = b.Model
	}
	if model == "" {
		return nil, "", &dsl.BackendUnconfigured{Backend: name, Missing: []string{"model"}}
	}
	return b, strings.TrimPrefix(model, b.StripPrefix), nil
}

// BackendOf is the backend a model id's prefix names ("" when none does).
func BackendOf(model string) string {
	switch {
	case strings.HasPrefix(model, "@cf/"), strings.HasPrefix(model, "workers-ai/"):
		return WorkersAI
	case strings.HasPrefix(model, "anthropic/"):
		return Anthropic
	case strings.HasPrefix(model, "deepseek/"):
		return DeepSeek
	case strings.HasPrefix(model, "bedrock/"):
		return Bedrock
	case strings.HasPrefix(model, "openai/"):
		return OpenAI
	}
	return ""
}

// Complete runs one completion: routed, authenticated, retried, structured.
func (g *Gateway) Complete(ctx context.Context, r Request) (Result, error) {
	b, model, err := g.route(r)
	if err != nil {
		return Result{}, err
	}
	res := Result{Backend: b.Name, Model: model}
	structured := len(r.Tools) == 1
	jsonMode := r.JSON || (b.JSON && structured)
	var c completion
	if !jsonMode {
		c, err = g.call(ctx, b, model, r, false, &res)
		if err != nil {
			return g.priced(res), err
		}
		if !structured || c.hasValidCall(r.Tools[0].Name) {
			return g.priced(c.into(res)), nil
		}
		// The model answered without calling the tool (or with arguments that are not
		// JSON): ask once more in json mode, as the original did.
		res.JSONFallback = true
	}
	c, err = g.call(ctx, b, model, r, true, &res)
	if err != nil {
		return g.priced(res), err
	}
	res = c.into(res)
	if structured {
		args, ok := ExtractJSON(c.text)
		if !ok {
			return g.priced(res), &dsl.StructuredOutputInvalid{Surface: r.Tools[0].Name, Reason: "the model's json-mode answer holds no JSON object"}
		}
		res.ToolCalls = []dsl.ModelToolCall{{Name: r.Tools[0].Name, Arguments: args}}
	}
	return g.priced(res), nil
}

func (g *Gateway) priced(r Result) Result {
	p, ok := g.prices[r.Backend+"/"+r.Model]
	if !ok {
		p, ok = g.prices[r.Model]
	}
	if !ok {
		r.CostBasis = "unpriced"
		return r
	}
	r.CostBasis = "priced"
	r.CostMicroUSD = int64(float64(r.InputTokens)*p.InputPerMTok + float64(r.OutputTokens)*p.OutputPerMTok)
	return r
}

// completion is one answer, before structuring.
type completion struct {
	text  string
	calls []dsl.ModelToolCall
}

func (c completion) hasValidCall(name string) bool {
	for _, tc := range c.calls {
		if tc.Name == name && json.Valid(tc.Arguments) {
			return true
		}
	}
	return false
}

func (c completion) into(r Result) Result {
	r.Text, r.ToolCalls = c.text, nil
	for _, tc := range c.calls {
		if json.Valid(tc.Arguments) {
			r.ToolCalls = append(r.ToolCalls, tc)
		}
	}
	return r
}

// call makes one completion with retries; tokens of every answered attempt add to res.
func (g *Gateway) call(ctx context.Context, b *Backend, model string, r Request, jsonMode bool, res *Result) (completion, error) {
	req := chatRequest(model, r, jsonMode)
	var last error
	for attempt := 1; attempt <= max(1, g.Attempts); attempt++ {
		c, status, retryAfter, err := g.once(ctx, b, req, r, res)
		if err == nil {
			return c, nil
		}
		var typed dsl.TypedError
		if errors.As(err, &typed) {
			if _, ok := typed.(*dsl.ModelCallFailed); !ok {
				return completion{}, typed // OIDC, STS or configuration: not the model's failure
			}
		}
		f := classify(ctx, err, status)
		last = f
		wait, again := g.retryable(f, attempt, retryAfter)
		if !again || attempt == g.Attempts {
			break
		}
		if err := g.Sleep(ctx, wait); err != nil {
			return completion{}, &dsl.ModelCallFailed{Reason: ReasonTimeout, Message: "gave up waiting to retry: " + err.Error()}
		}
	}
	return completion{}, last
}

// retryable decides whether a failure is worth another attempt, and after how long.
func (g *Gateway) retryable(f *dsl.ModelCallFailed, attempt int, retryAfter time.Duration) (time.Duration, bool) {
	backoff := time.Duration(1<<(attempt-1)) * time.Second
	switch f.Reason {
	case ReasonRateLimited:
		if retryAfter > g.MaxRetryAfter {
			return 0, false
		}
		if retryAfter > 0 {
			return retryAfter, true
		}
		return backoff, true
	case ReasonUnavailable:
		return backoff, true
	case ReasonBadResponse:
		return 0, attempt == 1 // a garbled answer once is worth one more try
	}
	return 0, false // auth, context overflow and timeouts repeat themselves
}

func chatRequest(model string, r Request, jsonMode bool) openai.ChatCompletionRequest {
	sys := r.System
	req := openai.ChatCompletionRequest{Model: model, MaxTokens: r.MaxTokens}
	if r.Temperature != nil {
		req.Temperature = float32(*r.Temperature)
	}
	if jsonMode {
		req.ResponseFormat = &openai.ChatCompletionResponseFormat{Type: openai.ChatCompletionResponseFormatTypeJSONObject}
		if len(r.Tools) == 1 {
			sys = strings.TrimSpace(sys + "\n\nRespond with only a JSON object (no prose, no code fence) that matches this JSON Schema:\n" +
				string(r.Tools[0].Schema))
		} else if !strings.Contains(strings.ToLower(sys+r.User), "json") {
			sys = strings.TrimSpace(sys + "\n\nRespond in JSON.") // json mode requires the word in the prompt
		}
	} else {
		for _, t := range r.Tools {
			req.Tools = append(req.Tools, openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
				Name: t.Name, Description: t.Description, Parameters: t.Schema}})
		}
	}
	if sys != "" {
		req.Messages = append(req.Messages, openai.ChatCompletionMessage{Role: openai.ChatMessageRoleSystem, Content: sys})
	}
	req.Messages = append(req.Messages, openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, Content: r.User})
	return req
}

// once is one HTTP call. status and retryAfter come from the response, when there was one.
func (g *Gateway) once(ctx context.Context, b *Backend, req openai.ChatCompletionRequest, r Request, res *Result) (completion, int, time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, g.AttemptTimeout)
	defer cancel()
	d := &callDoer{inner: g.doer, backend: b}
	if b.bedrock != nil {
		creds, err := g.bedrockCreds(actx, b, r)
		if err != nil {
			return completion{}, 0, 0, err
		}
		d.sign = func(h *http.Request, body []byte) error { return b.bedrock.sign(h, body, creds, g.Now()) }
	}
	base := strings.TrimRight(strings.ReplaceAll(b.BaseURL, "{region}", g.region(b, r)), "/")
	client := openai.NewClientWithConfig(openai.ClientConfig{BaseURL: base, APIType: openai.APITypeOpenAI,
		HTTPClient: d, EmptyMessagesLimit: 300})
	res.Calls++
	var c completion
	resp, err := client.CreateChatCompletion(actx, req)
	if err == nil {
		res.InputTokens += resp.Usage.PromptTokens
		res.OutputTokens += resp.Usage.CompletionTokens
		if len(resp.Choices) == 0 {
			err = &badResponse{"no choices in the answer"}
		} else {
			m := resp.Choices[0].Message
			c.text = m.Content
			for _, tc := range m.ToolCalls {
				c.calls = append(c.calls, dsl.ModelToolCall{Name: tc.Function.Name, Arguments: json.RawMessage(tc.Function.Arguments)})
			}
		}
	}
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		err = fmt.Errorf("attempt timed out after %s: %w", g.AttemptTimeout, context.DeadlineExceeded)
	}
	return c, d.status, d.retryAfter, err
}

type badResponse struct{ why string }

func (e *badResponse) Error() string { return e.why }

// classify turns what go-openai returned into the typed failure.
func classify(ctx context.Context, err error, status int) *dsl.ModelCallFailed {
	var f *dsl.ModelCallFailed
	if errors.As(err, &f) {
		return f
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return &dsl.ModelCallFailed{Reason: ReasonTimeout, Message: err.Error()}
	}
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	msg, code := err.Error(), ""
	switch {
	case errors.As(err, &apiErr):
		status, msg = apiErr.HTTPStatusCode, apiErr.Message
		code = fmt.Sprint(apiErr.Code)
	case errors.As(err, &reqErr):
		status = reqErr.HTTPStatusCode
		msg = fmt.Sprintf("HTTP %d: %s", status, truncate(string(reqErr.Body), 300))
	}
	lower := strings.ToLower(msg + " " + code)
	switch {
	case status == 401 || status == 403:
		return &dsl.ModelCallFailed{Reason: ReasonAuth, Message: msg}
	case status == 429:
		return &dsl.ModelCallFailed{Reason: ReasonRateLimited, Message: msg}
	case status == 413 || code == "context_length_exceeded" ||
		(status == 400 && (strings.Contains(lower, "context length") || strings.Contains(lower, "context window") ||
			strings.Contains(lower, "too many tokens") || strings.Contains(lower, "prompt is too long"))):
		return &dsl.ModelCallFailed{Reason: ReasonContextOverflow, Message: msg}
	case status >= 500:
		return &dsl.ModelCallFailed{Reason: ReasonUnavailable, Message: msg}
	case status >= 400:
		return &dsl.ModelCallFailed{Reason: ReasonBadResponse, Message: msg}
	case status >= 200 && status < 300:
		return &dsl.ModelCallFailed{Reason: ReasonBadResponse, Message: "the answer is not a chat completion: " + msg}
	}
	return &dsl.ModelCallFailed{Reason: ReasonUnavailable, Message: msg} // no response: the network
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// callDoer adds a backend's authentication to each request and remembers the
// response's status and Retry-After (go-openai's errors carry neither header).
type callDoer struct {
	inner      Doer
	backend    *Backend
	sign       func(*http.Request, []byte) error
	status     int
	retryAfter time.Duration
}

func (d *callDoer) Do(r *http.Request) (*http.Response, error) {
	if d.backend.APIKey != "" {
		r.Header.Set("Authorization", "Bearer "+d.backend.APIKey)
	} else {
		r.Header.Del("Authorization")
	}
	for k, v := range d.backend.Header {
		r.Header.Set(k, v)
	}
	if d.sign != nil {
		var body []byte
		if r.GetBody != nil {
			rc, err := r.GetBody()
			if err != nil {
				return nil, err
			}
			body, err = io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
		}
		if err := d.sign(r, body); err != nil {
			return nil, err
		}
	}
	resp, err := d.inner.Do(r)
	if resp != nil {
		d.status = resp.StatusCode
		d.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	}
	return resp, err
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// ExtractJSON finds the JSON object in a json-mode answer: reasoning blocks
// (<think>…</think>) and code fences are dropped, then the outermost {…} is taken.
func ExtractJSON(text string) (json.RawMessage, bool) {
	for {
		i := strings.Index(text, "<think>")
		if i < 0 {
			break
		}
		j := strings.Index(text[i:], "</think>")
		if j < 0 {
			text = text[:i]
			break
		}
		text = text[:i] + text[i+j+len("</think>"):]
	}
	start, end := strings.Index(text, "{"), strings.LastIndex(text, "}")
	if start < 0 || end < start {
		return nil, false
	}
	raw := json.RawMessage(text[start : end+1])
	if !json.Valid(raw) {
		return nil, false
	}
	return raw, true
}
