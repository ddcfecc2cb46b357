// Package agentapi is the wire contract between the edge and the agent, both ways:
//
//   - the agent's own HTTP server in its sandbox (Start, Cancel, health), called by the
//     edge's sandbox port;
//   - the edge's agent API (heartbeat, steps, exit, secrets), called by the agent with
//     the run-scoped, expiring token it was started with.
//
// It holds types and a small client only, so the agent can import it without the edge.
package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Paths of the agent's own server.
const (
	PathStart  = "/start"
	PathCancel = "/cancel"
	PathHealth = "/health"
)

// EnvServerToken names the environment variable a local sandbox gives its agent's
// server token in (`flare agent` reads it). A Container gets none: its agent pins the
// token of the first /start, which the edge sends before any of the run's code runs.
const EnvServerToken = "FLARE_AGENT_TOKEN"

// Start is what the edge sends an agent to begin one attempt of an execution.
type Start struct {
	// ServerToken is the agent server's token for the sandbox (edge.AgentServerToken):
	// the Sandboxes port sends it as "Authorization: Bearer", never in the body.
	ServerToken string `json:"-"`

	Exec    string          `json:"exec"`
	Attempt int             `json:"attempt"`
	Run     string          `json:"run"`
	EdgeURL string          `json:"edgeUrl"` // base of the edge's agent API
	Token   string          `json:"token"`   // run-scoped agent token (Bearer)
	GitHub  GitHub          `json:"github"`
	Inputs  json.RawMessage `json:"inputs"`
	Blobs   Blobs           `json:"blobs"`
	Local   bool            `json:"local,omitempty"` // local mode: local repo paths allowed
	Browser Browser         `json:"browser,omitzero"`
}

// Browser says where the attempt's browser sessions go: CDPURL, when set, is the
// edge's /v1/browser/cdp with a token scoped to it; else the sandbox launches its own
// chromium.
type Browser struct {
	CDPURL string `json:"cdpUrl,omitempty"`
}

// GitHub is the dispatch's target.
type GitHub struct {
	Repo     string `json:"repo"` // owner/name
	Ref      string `json:"ref"`
	SHA      string `json:"sha"`
	PRNumber int    `json:"prNumber,omitempty"`
}

// Blobs is S3 access scoped to the execution's prefixes, short-lived.
type Blobs struct {
	Endpoint    string    `json:"endpoint"`
	Bucket      string    `json:"bucket"`
	AccessKeyID string    `json:"accessKeyId"`
	Secret      string    `json:"secret"`
	Expires     time.Time `json:"expires"`
	LogPrefix   string    `json:"logPrefix"` // logs/<exec>/
	// LogQuota is the execution's log budget in bytes across its attempts (LOG_QUOTA_MB;
	// 0: the agent's default, logship.DefaultQuota).
	LogQuota int64 `json:"logQuota,omitempty"`
	// CacheWrite says the credential may write the repository's cache/<repo>/ (it can
	// always read it); executions of pull requests only read.
	CacheWrite bool `json:"cacheWrite,omitempty"`
}

// Cancel stops an attempt.
type Cancel struct {
	ServerToken string `json:"-"` // as Start.ServerToken
	Exec        string `json:"exec"`
	Attempt     int    `json:"attempt"`
}

// Failure is a typed error on the wire and in the step journal: a tag of dsl's closed
// set (dsl.Failure is this type), a human message, and the tag's fields as a JSON
// object. actors.Failure has the same fields, so the edge converts between the two
// with a type conversion that stops compiling if they drift apart.
type Failure struct {
	Tag     string          `json:"tag"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// Attempt names the sender of every agent API call.
type Attempt struct {
	Attempt int `json:"attempt"`
}

// StepDecision answers StepBegin: Done means the journal already holds the step.
type StepDecision struct {
	Done    bool            `json:"done"`
	Result  json.RawMessage `json:"result,omitempty"`
	Failure *Failure        `json:"failure,omitempty"`
}

// StepEnd records a step.
type StepEnd struct {
	Attempt int             `json:"attempt"`
	Result  json.RawMessage `json:"result,omitempty"`
	Failure *Failure        `json:"failure,omitempty"`
}

// Exit ends the attempt.
type Exit struct {
	Attempt int             `json:"attempt"`
	Output  json.RawMessage `json:"output,omitempty"`
	Failure *Failure        `json:"failure,omitempty"`
}

// SecretsRequest asks for the CONFIG_KV values at Prefix+key for each key (contract
// §5.3). The edge serves only keys the execution declared (its dispatch's
// inputs.secrets under inputs.secretPrefix, or its run's Spec.Needs.Secrets); any other
// key is 403 secret_not_declared.
type SecretsRequest struct {
	Attempt  int      `json:"attempt"`
	Keys     []string `json:"keys"`
	Prefix   string   `json:"prefix,omitempty"`
	Required bool     `json:"required,omitempty"`
}

// Secrets answers SecretsRequest: the values found, and the keys missing.
type Secrets struct {
	Values  map[string]string `json:"values"`
	Missing []string          `json:"missing,omitempty"`
}

// ErrStopped is returned when the edge refuses the attempt (409): superseded by a
// newer attempt, or the run is over. The agent must stop.
var ErrStopped = errors.New("agent attempt stopped by the edge")

// Client calls the edge's agent API for one execution.
type Client struct {
	Base    string // edge URL
	Exec    string
	Attempt int
	Token   string
	HTTP    *http.Client
	// TryTimeout bounds each try of a call (default DefaultTryTimeout), so one hung
	// connection costs a retry, not the call; the caller's context bounds the whole.
	TryTimeout time.Duration
}

// DefaultTryTimeout is Client.TryTimeout's default: far above any answer of the edge
// (a GitHub call brokered by it included), far below a run.
const DefaultTryTimeout = 60 * time.Second

func (c *Client) path(parts ...string) string {
	p := c.Base + "/v1/agent/" + url.PathEscape(c.Exec)
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// Heartbeat tells the run actor this attempt is alive.
func (c *Client) Heartbeat(ctx context.Context) error {
	return c.post(ctx, c.path("heartbeat"), Attempt{c.Attempt}, nil)
}

// BeginStep asks the journal whether step name already completed.
func (c *Client) BeginStep(ctx context.Context, name string) (StepDecision, error) {
	var d StepDecision
	err := c.post(ctx, c.path("steps", name, "begin"), Attempt{c.Attempt}, &d)
	return d, err
}

// EndStep records the step's result or failure.
func (c *Client) EndStep(ctx context.Context, name string, result json.RawMessage, f *Failure) error {
	return c.post(ctx, c.path("steps", name, "end"), StepEnd{Attempt: c.Attempt, Result: result, Failure: f}, nil)
}

// Exit ends the attempt with the run's output or failure.
func (c *Client) Exit(ctx context.Context, output json.RawMessage, f *Failure) error {
	return c.post(ctx, c.path("exit"), Exit{Attempt: c.Attempt, Output: output, Failure: f}, nil)
}

// Secrets loads secrets through the edge (the sandbox holds none of its own).
func (c *Client) Secrets(ctx context.Context, req SecretsRequest) (Secrets, error) {
	req.Attempt = c.Attempt
	var s Secrets
	err := c.post(ctx, c.path("secrets"), req, &s)
	return s, err
}

// ErrorBody is every JSON error the edge returns.
type ErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// StatusError is a final (4xx) answer of the edge: the status and the JSON error body
// (Raw keeps it whole, for errors with more fields).
type StatusError struct {
	URL        string
	Status     int
	StatusText string
	Body       ErrorBody
	Raw        []byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("POST %s: %s: %s %s", e.URL, e.StatusText, e.Body.Error, e.Body.Message)
}

func (c *Client) post(ctx context.Context, u string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	// Transient failures (the edge restarting, a hung connection) are retried briefly;
	// 4xx are final.
	var last error
	for try := 0; try < 5; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(try*try) * 100 * time.Millisecond):
			}
		}
		done, err := c.try(ctx, u, b, out)
		if done {
			return err
		}
		last = err
	}
	return last
}

// try makes one request within TryTimeout; done is false for a transient failure
// worth another try.
func (c *Client) try(ctx context.Context, u string, b []byte, out any) (done bool, err error) {
	limit := c.TryTimeout
	if limit <= 0 {
		limit = DefaultTryTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return true, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusConflict:
		return true, ErrStopped
	case resp.StatusCode >= 500:
		return false, fmt.Errorf("POST %s: %s: %s", u, resp.Status, bytes.TrimSpace(data))
	case resp.StatusCode >= 300:
		se := &StatusError{URL: u, Status: resp.StatusCode, StatusText: resp.Status, Raw: data}
		_ = json.Unmarshal(data, &se.Body)
		return true, se
	case err != nil:
		return false, fmt.Errorf("POST %s: reading the answer: %w", u, err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return true, fmt.Errorf("POST %s: decode: %w", u, err)
		}
	}
	return true, nil
}
