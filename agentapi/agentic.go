package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// The agentic capabilities: model calls through the edge's gateway (the agent holds no
// model key), the run's comment on a pull request, and failed workflow runs.
//
//	POST /v1/agent/<exec>/model                   a completion (Needs.Model)
//	POST /v1/agent/<exec>/github/comment          find the comment holding a marker (Needs.Comments)
//	POST /v1/agent/<exec>/github/comment/put      create or update it (Needs.Comments)
//	POST /v1/agent/<exec>/github/failed-runs      failed workflow runs since a time (Needs.CI)

// ModelRequest is one completion. Model is prefixed by its route (@cf/…, anthropic/…,
// bedrock/…, deepseek/…, openai/…); Backend overrides the prefix.
type ModelRequest struct {
	Backend     string      `json:"backend,omitempty"`
	Model       string      `json:"model"`
	System      string      `json:"system,omitempty"`
	User        string      `json:"user"`
	Tools       []ModelTool `json:"tools,omitempty"`
	MaxTokens   int         `json:"maxTokens,omitempty"`
	Temperature *float64    `json:"temperature,omitempty"`
	JSON        bool        `json:"json,omitempty"`
	AWS         *ModelAWS   `json:"aws,omitempty"`
}

// ModelTool is a tool the model may call, with its JSON Schema.
type ModelTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema"`
}

// ModelAWS selects the role and region of a Bedrock call.
type ModelAWS struct {
	RoleArn string `json:"roleArn"`
	Region  string `json:"region,omitempty"`
	Session string `json:"session,omitempty"`
}

// ModelResponse is the model's answer and what it cost.
type ModelResponse struct {
	Text         string          `json:"text,omitempty"`
	ToolCalls    []ModelToolCall `json:"toolCalls,omitempty"`
	InputTokens  int             `json:"inputTokens,omitempty"`
	OutputTokens int             `json:"outputTokens,omitempty"`
	Model        string          `json:"model,omitempty"`
	Backend      string          `json:"backend,omitempty"`
	CostMicroUSD int64           `json:"costMicroUsd,omitempty"`
}

// ModelToolCall is one tool call the model made.
type ModelToolCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// ModelCall is the body of POST /v1/agent/<exec>/model.
type ModelCall struct {
	Attempt int `json:"attempt"`
	ModelRequest
}

// CapabilityFailure is the body of a 424 capability_failed: a brokered call failed
// with one of the typed failures (ModelCallFailed, BackendUnconfigured, …).
type CapabilityFailure struct {
	Error   string  `json:"error"` // capability_failed
	Message string  `json:"message"`
	Failure Failure `json:"failure"`
}

// AsCapabilityFailure extracts the typed failure from an error the client returned.
func AsCapabilityFailure(err error) (Failure, bool) {
	var se *StatusError
	if !errors.As(err, &se) || se.Body.Error != "capability_failed" {
		return Failure{}, false
	}
	var cf CapabilityFailure
	if json.Unmarshal(se.Raw, &cf) != nil || cf.Failure.Tag == "" {
		return Failure{}, false
	}
	return cf.Failure, true
}

// CommentRequest finds (or, with Body, puts) a pull request's comment by its marker.
type CommentRequest struct {
	Attempt int    `json:"attempt"`
	Repo    string `json:"repo"`
	PR      int    `json:"pr"`
	Marker  string `json:"marker"`
	Body    string `json:"body,omitempty"`
}

// Comment answers CommentRequest.
type Comment struct {
	Found   bool   `json:"found"`
	ID      int64  `json:"id,omitempty"`
	URL     string `json:"url,omitempty"`
	Body    string `json:"body,omitempty"`
	Created bool   `json:"created,omitempty"`
}

// FailedRunsRequest asks for a repository's failed workflow runs since a time.
type FailedRunsRequest struct {
	Attempt int       `json:"attempt"`
	Repo    string    `json:"repo"`
	Since   time.Time `json:"since"`
}

// WorkflowRun is one GitHub Actions workflow run.
type WorkflowRun struct {
	ID         int64     `json:"id"`
	Name       string    `json:"name"`
	Branch     string    `json:"branch,omitempty"`
	SHA        string    `json:"sha,omitempty"`
	Event      string    `json:"event,omitempty"`
	Conclusion string    `json:"conclusion"`
	URL        string    `json:"url,omitempty"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// FailedRuns answers FailedRunsRequest.
type FailedRuns struct {
	Runs []WorkflowRun `json:"runs"`
}

// Model asks the edge for a completion.
func (c *Client) Model(ctx context.Context, r ModelRequest) (ModelResponse, error) {
	var out ModelResponse
	err := c.post(ctx, c.path("model"), ModelCall{Attempt: c.Attempt, ModelRequest: r}, &out)
	return out, err
}

// FindComment finds the pull request's comment holding marker.
func (c *Client) FindComment(ctx context.Context, repo string, pr int, marker string) (Comment, error) {
	var out Comment
	err := c.post(ctx, c.path("github", "comment"), CommentRequest{Attempt: c.Attempt, Repo: repo, PR: pr, Marker: marker}, &out)
	return out, err
}

// PutComment creates or updates the pull request's comment holding marker.
func (c *Client) PutComment(ctx context.Context, repo string, pr int, marker, body string) (Comment, error) {
	var out Comment
	err := c.post(ctx, c.path("github", "comment", "put"), CommentRequest{Attempt: c.Attempt, Repo: repo, PR: pr, Marker: marker, Body: body}, &out)
	return out, err
}

// FailedRuns lists a repository's failed workflow runs since a time.
func (c *Client) FailedRuns(ctx context.Context, repo string, since time.Time) (FailedRuns, error) {
	var out FailedRuns
	err := c.post(ctx, c.path("github", "failed-runs"), FailedRunsRequest{Attempt: c.Attempt, Repo: repo, Since: since}, &out)
	return out, err
}
