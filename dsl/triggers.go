package dsl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// Trigger fires the run from a GitHub webhook (webhook mode, contract §2.5). The edge
// evaluates every run's triggers for each delivery, each on its own: one trigger's
// error never stops another's.
//
// A trigger fires when Event is the delivery's X-GitHub-Event, Actions (when not
// empty) holds the payload's "action", and Gate (when not nil) says yes. The execution
// id is IdempotencyKey's: the same logical work from an Action dispatch and from a
// webhook should produce the same id (e.g. SemanticKey), so a repository using both
// gets one execution. Inputs are validated with the run's input type, as a dispatch's
// are.
type Trigger struct {
	Event          string
	Actions        []string
	Gate           func(e *WebhookEvent) bool   // nil = always
	IdempotencyKey func(e *WebhookEvent) string // the execution id
	Inputs         func(e *WebhookEvent) any
}

// Matches reports whether the trigger subscribes to the event and its action (the gate
// is not consulted).
func (t Trigger) Matches(e *WebhookEvent) bool {
	if t.Event != e.Name {
		return false
	}
	if len(t.Actions) == 0 {
		return true
	}
	action := e.String("action")
	for _, a := range t.Actions {
		if a == action {
			return true
		}
	}
	return false
}

var eventNameChars = pattern.NewSet("a-z_")

// validateTriggers reports the first problem with the spec's triggers.
func validateTriggers(s Spec) error {
	for i, t := range s.Triggers {
		switch {
		case !eventNameChars.Run(t.Event, 1, len(t.Event)):
			return fmt.Errorf("run %s: trigger %d: event %q is not a GitHub event name", s.Name, i, t.Event)
		case t.IdempotencyKey == nil:
			return fmt.Errorf("run %s: trigger %d (%s) has no IdempotencyKey", s.Name, i, t.Event)
		case t.Inputs == nil:
			return fmt.Errorf("run %s: trigger %d (%s) has no Inputs", s.Name, i, t.Event)
		}
	}
	return nil
}

// WebhookEvent is one GitHub webhook delivery as a trigger sees it: the event name, the
// delivery id and the payload, with small typed readers over dotted paths
// ("deployment_status.state", "pull_request.head.sha"). A missing field or one of
// another type reads as the zero value. Numbers keep their exact digits (ids exceed
// 2^53 on GitHub).
type WebhookEvent struct {
	Name     string          // X-GitHub-Event
	Delivery string          // X-GitHub-Delivery
	Payload  json.RawMessage // the body, as received

	tree map[string]any
}

// ParseWebhookEvent decodes the payload, which must be a JSON object.
func ParseWebhookEvent(name, delivery string, payload []byte) (*WebhookEvent, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("webhook payload: %w", err)
	}
	if tree == nil {
		return nil, fmt.Errorf("webhook payload is not a JSON object")
	}
	if dec.More() {
		return nil, fmt.Errorf("webhook payload has data after the JSON object")
	}
	return &WebhookEvent{Name: name, Delivery: delivery, Payload: payload, tree: tree}, nil
}

// Get returns the value at a dotted path, or nil.
func (e *WebhookEvent) Get(path string) any {
	var v any = e.tree
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// String is the string at path ("" when absent or not a string).
func (e *WebhookEvent) String(path string) string {
	s, _ := e.Get(path).(string)
	return s
}

// Int is the integer at path (0 when absent or not an integer).
func (e *WebhookEvent) Int(path string) int64 {
	n, ok := e.Get(path).(json.Number)
	if !ok {
		return 0
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return 0
	}
	return i
}

// Bool is the boolean at path (false when absent or not a boolean).
func (e *WebhookEvent) Bool(path string) bool {
	b, _ := e.Get(path).(bool)
	return b
}

// Strings is the strings found at path in a list of objects: Strings("pull_request.labels",
// "name") lists the label names.
func (e *WebhookEvent) Strings(path, field string) []string {
	list, _ := e.Get(path).([]any)
	var out []string
	for _, it := range list {
		if m, ok := it.(map[string]any); ok {
			if s, ok := m[field].(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// Decode unmarshals the payload into v (for triggers that prefer a struct).
func (e *WebhookEvent) Decode(v any) error { return json.Unmarshal(e.Payload, v) }

// Repo is repository.full_name ("unknown/unknown" when absent, as the original).
func (e *WebhookEvent) Repo() string {
	if r := e.String("repository.full_name"); r != "" {
		return r
	}
	return "unknown/unknown"
}

// HeadSHA is the commit the event is about: the first of deployment.sha,
// pull_request.head.sha, head_commit.id, check_run.head_sha, check_suite.head_sha;
// "main" when none (contract §2.5).
func (e *WebhookEvent) HeadSHA() string {
	for _, p := range []string{"deployment.sha", "pull_request.head.sha", "head_commit.id", "check_run.head_sha", "check_suite.head_sha"} {
		if s := e.String(p); s != "" {
			return s
		}
	}
	return "main"
}

// Ref is the branch the event is about: a push's ref, or a pull request's or check
// suite's head branch as refs/heads/<name>; refs/heads/main when none (the original
// always said refs/heads/main).
func (e *WebhookEvent) Ref() string {
	if r := e.String("ref"); strings.HasPrefix(r, "refs/") {
		return r
	}
	for _, p := range []string{"pull_request.head.ref", "check_run.check_suite.head_branch", "check_suite.head_branch"} {
		if r := e.String(p); r != "" && !strings.HasPrefix(r, "refs/") {
			return "refs/heads/" + r
		}
	}
	return "refs/heads/main"
}

// SemanticKey is "{run}:{owner_repo}:{sha12}", the id Action mode computes for the same
// run, repository and commit (so both modes collapse to one execution).
func SemanticKey(run, repo, sha string) string {
	if len(sha) > 12 {
		sha = sha[:12]
	}
	return run + ":" + strings.ReplaceAll(repo, "/", "_") + ":" + sha
}
