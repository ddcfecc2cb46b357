package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
)

// stackClient talks to a running edge exactly like the GitHub Action does.
type stackClient struct {
	url    string
	secret string
	http   *http.Client
}

// findRunningStack returns a client for the `flare up` whose lock is under data, if
// its process is alive.
func findRunningStack(data string) (*stackClient, bool) {
	l, err := local.FindStack(data)
	if err != nil || l.PID <= 0 || syscall.Kill(l.PID, 0) != nil {
		return nil, false
	}
	sec, err := local.LoadSecrets(data, os.Getenv)
	if err != nil {
		return nil, false
	}
	return &stackClient{url: l.URL, secret: sec.HMACSecret, http: &http.Client{Timeout: 30 * time.Second}}, true
}

type dispatchResult struct {
	ExecutionID string `json:"executionId"`
	LogsURL     string `json:"logsUrl"`
	DetailsURL  string `json:"detailsUrl"` // the log viewer page
	Status      string `json:"status"`
	Deduped     bool   `json:"deduped"`
	Error       string `json:"error"`
	Message     string `json:"message"`
	Field       string `json:"field"`
	Detail      any    `json:"detail"`
	Fingerprint string `json:"dispatcher_secret_fingerprint"`
}

// link is what to show a person: the viewer page, else the log link.
func (r dispatchResult) link() string {
	if r.DetailsURL != "" {
		return r.DetailsURL
	}
	return r.LogsURL
}

// dispatch signs the compact JSON body once and posts exactly those bytes.
func (c *stackClient) dispatch(ctx context.Context, body edge.DispatchBody, idempotencyKey string) (dispatchResult, int, error) {
	var out dispatchResult
	raw, err := json.Marshal(body)
	if err != nil {
		return out, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/dispatch/"+url.PathEscape(body.Run), bytes.NewReader(raw))
	if err != nil {
		return out, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader(c.secret, raw))
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return out, 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		return out, resp.StatusCode, fmt.Errorf("dispatch answered %s: %s", resp.Status, data)
	}
	return out, resp.StatusCode, nil
}

// describeDispatchError explains a non-202 answer.
func describeDispatchError(r dispatchResult, status int, secret string) string {
	msg := fmt.Sprintf("dispatch refused (%d %s): %s", status, r.Error, r.Message)
	if r.Field != "" {
		msg += fmt.Sprintf("\n  field: %s", r.Field)
	}
	if r.Detail != nil {
		msg += fmt.Sprintf("\n  detail: %v", r.Detail)
	}
	if r.Fingerprint != "" {
		msg += fmt.Sprintf("\n  secret fingerprint: local %s, dispatcher %s", edge.Fingerprint(secret), r.Fingerprint)
	}
	return msg
}

type executionView struct {
	Execution edge.Execution    `json:"execution"`
	Steps     []edge.StepRow    `json:"steps"`
	Summary   json.RawMessage   `json:"summary"`
	Check     *edge.CheckReport `json:"check"`
	LogsURL   string            `json:"logsUrl"`
	Logs      []map[string]any  `json:"logs"`
}

func (c *stackClient) execution(ctx context.Context, id string) (executionView, error) {
	var v executionView
	u := c.url + "/v1/executions/" + url.PathEscape(id) + "?t=" + edge.LogToken(edge.Config{HMACSecret: c.secret}, id)
	err := c.getJSON(ctx, u, &v)
	return v, err
}

func (c *stackClient) getJSON(ctx context.Context, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, into)
}

// logsText returns all of an execution's logs rendered as text ("" when none yet).
func (c *stackClient) logsText(ctx context.Context, id string) (string, error) {
	u := c.url + "/v1/executions/" + url.PathEscape(id) + "/logs?format=text&t=" + edge.LogToken(edge.Config{HMACSecret: c.secret}, id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return string(data), nil
	case http.StatusNotFound:
		return "", nil
	}
	return "", fmt.Errorf("logs: %s: %s", resp.Status, bytes.TrimSpace(data))
}

// follow watches an execution until it ends (watch: the log viewer's event stream)
// and then reads it once: the stream ends after the execution's status is terminal,
// which the edge writes after the completed check-run.
func (c *stackClient) follow(ctx context.Context, id string, opts watchOpts) (executionView, error) {
	if _, err := c.watch(ctx, id, opts); err != nil {
		v, _ := c.execution(context.WithoutCancel(ctx), id) // what it is now, for the message
		return v, err
	}
	return c.execution(ctx, id)
}

// conclusion is the run's result: the completed check-run's conclusion, else (the
// check-run not written yet) the terminal status; "" while the run goes on.
func (v executionView) conclusion() string {
	if v.Check != nil && v.Check.Status == "completed" && v.Check.Conclusion != "" {
		return v.Check.Conclusion
	}
	if actors.Status(v.Execution.Status).Terminal() {
		return v.Execution.Status
	}
	return ""
}

// exitFor maps a conclusion to the exit code of a command that waited for the run.
func exitFor(conclusion string) int {
	switch conclusion {
	case "success", "neutral":
		return exitOK
	case "cancelled", "timed_out":
		return exitCancelled
	}
	return exitFailed
}

// localTarget resolves a local repository for local mode: its absolute path, HEAD's
// sha, and an owner/name for the envelope.
func localTarget(repo, sha string) (path, resolvedSHA, ownerName string, err error) {
	path, err = filepath.Abs(repo)
	if err != nil {
		return "", "", "", err
	}
	if sha == "" {
		out, err := exec.Command("git", "-C", path, "rev-parse", "HEAD").Output()
		if err != nil {
			return "", "", "", fmt.Errorf("--repo %s: not a git repository with a commit (git rev-parse HEAD: %v)", repo, err)
		}
		sha = strings.TrimSpace(string(out))
	}
	name := regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(filepath.Base(path), "-")
	if name == "" || name == "." || name == "-" {
		name = "repo"
	}
	return path, sha, "local/" + name, nil
}

func newIdempotencyKey(run string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return run + ":cli-" + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}
