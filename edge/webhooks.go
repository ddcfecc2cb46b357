package edge

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
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// Webhook mode (contract §2.5): POST /v1/webhooks/github.

const (
	// maxWebhookBody is GitHub's own cap on a delivery (25 MB); bigger is refused.
	maxWebhookBody = 25 << 20
	// deliveryTTL is how long a delivery id is remembered for dedup.
	deliveryTTL = 24 * time.Hour
	// rerunSep joins an execution id and a re-requested check-run's id.
	rerunSep = ":rerun-"
)

var deliveryChars = pattern.NewSet("A-Za-z0-9._-")

// WebhookDispatched is one execution a delivery started (or found already started).
type WebhookDispatched struct {
	Run         string `json:"run"`
	ExecutionID string `json:"executionId"`
	Deduped     bool   `json:"deduped,omitempty"` // the execution existed before
	Rerun       bool   `json:"rerun,omitempty"`   // a check_run rerequested re-run
}

// WebhookSkipped is a trigger that matched the event but did not start anything.
type WebhookSkipped struct {
	Run         string `json:"run"`
	ExecutionID string `json:"executionId,omitempty"`
	Reason      string `json:"reason"` // gate | invalid_inputs | invalid_execution_id | unknown_check_run | start_failed | cooldown
	Detail      string `json:"detail,omitempty"`
	// RetryAfterSec is set with reason cooldown: when the window ends.
	RetryAfterSec int `json:"retryAfterSec,omitempty"`
}

// WebhookResult is the 202 body.
type WebhookResult struct {
	Event      string              `json:"event"`
	DeliveryID string              `json:"deliveryId"`
	Dispatched []WebhookDispatched `json:"dispatched"`
	Skipped    []WebhookSkipped    `json:"skipped,omitempty"`
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	if s.Config.WebhookSecret == "" {
		writeError(w, http.StatusServiceUnavailable, "webhook_not_configured",
			"GITHUB_WEBHOOK_SECRET is unset; Webhook mode is off on this deploy")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "webhook body exceeds 25 MB")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_body", "could not read request body: "+err.Error())
		return
	}
	// The same routine as dispatch signatures (contract §2.2), with the webhook secret.
	if !VerifySignature(s.Config.WebhookSecret, body, r.Header.Get("X-Hub-Signature-256")) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "X-Hub-Signature-256 missing or invalid")
		return
	}
	delivery := strings.TrimSpace(r.Header.Get("X-GitHub-Delivery"))
	if delivery == "" {
		writeError(w, http.StatusBadRequest, "missing_delivery_id", "X-GitHub-Delivery header is required", "field", "X-GitHub-Delivery")
		return
	}
	if !deliveryChars.Run(delivery, 1, 100) {
		writeError(w, http.StatusBadRequest, "invalid_delivery_id", "X-GitHub-Delivery must match ^[A-Za-z0-9._-]{1,100}$", "field", "X-GitHub-Delivery")
		return
	}
	event := strings.TrimSpace(r.Header.Get("X-GitHub-Event"))
	if event == "" {
		writeError(w, http.StatusBadRequest, "missing_event", "X-GitHub-Event header is required", "field", "X-GitHub-Event")
		return
	}
	ctx := r.Context()
	seenKey := "gh-delivery:" + delivery
	if _, seen, err := s.idempotencyKV().Get(ctx, seenKey); err != nil {
		s.Log.Warn("webhook: delivery dedup lookup failed; evaluating anyway", "delivery", delivery, "err", err)
	} else if seen {
		writeJSON(w, http.StatusAccepted, map[string]any{"deduped": true, "deliveryId": delivery, "event": event})
		return
	}
	ev, err := dsl.ParseWebhookEvent(event, delivery, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "webhook body is not a JSON object", "detail", err.Error())
		return
	}
	s.learnInstallations(ctx, ev)

	res, failed := s.fanOut(ctx, ev, s.origin(r))
	// Recorded after the fan-out, and only when nothing failed to start, so a
	// redelivery retries what a transient failure lost (started ones dedupe by id).
	if !failed {
		if err := s.idempotencyKV().Put(ctx, seenKey, "1", deliveryTTL); err != nil {
			s.Log.Warn("webhook: recording the delivery failed", "delivery", delivery, "err", err)
		}
	}
	writeJSON(w, http.StatusAccepted, res)
}

// fanOut evaluates every run's triggers for the event, each independently, and the
// built-in check_run re-run. failed reports a start that failed (worth a redelivery).
func (s *Server) fanOut(ctx context.Context, ev *dsl.WebhookEvent, origin string) (res WebhookResult, failed bool) {
	res = WebhookResult{Event: ev.Name, DeliveryID: ev.Delivery, Dispatched: []WebhookDispatched{}}
	for _, name := range s.Runs.Names() {
		run := s.Runs[name]
		for _, t := range run.Spec().Triggers {
			if !t.Matches(ev) {
				continue
			}
			d, sk := s.fire(ctx, run, t, ev, origin)
			switch {
			case sk != nil:
				res.Skipped = append(res.Skipped, *sk)
				failed = failed || sk.Reason == "start_failed"
			default:
				res.Dispatched = append(res.Dispatched, *d)
			}
		}
	}
	var reruns []checkRef // check-runs to run again
	switch {
	case ev.Name == "check_run" && ev.String("action") == "rerequested":
		if run, ours := strings.CutPrefix(ev.String("check_run.name"), checkRunPrefix); ours {
			reruns = []checkRef{{run, ev.Int("check_run.id")}} // else another App's check-run
		}
	case ev.Name == "check_suite" && ev.String("action") == "rerequested":
		reruns = s.suiteCheckRuns(ctx, ev.String("repository.full_name"), ev.String("check_suite.head_sha"))
	}
	for _, c := range reruns {
		d, sk := s.rerun(ctx, c, ev.Int("installation.id"), origin)
		if sk != nil {
			res.Skipped = append(res.Skipped, *sk)
			failed = failed || sk.Reason == "start_failed"
		} else {
			res.Dispatched = append(res.Dispatched, *d)
		}
	}
	return res, failed
}

// checkRef is one of our check-runs: its run's name and its id.
type checkRef struct {
	run string
	id  int64
}

// suiteCheckRuns is what "Re-run all checks" (check_suite rerequested) runs again:
// the check-runs of this deploy on the commit, which are the suite (GitHub groups one
// App's check-runs per commit), the newest of each run as GitHub shows it. A fan-out's
// children are run again by their parent, never alone.
func (s *Server) suiteCheckRuns(ctx context.Context, repo, sha string) []checkRef {
	if repo == "" || sha == "" {
		return nil
	}
	rows, err := s.Meta.ListExecutions(ctx, ExecutionFilter{Repo: repo, SHA: sha, Limit: 500})
	if err != nil {
		s.Log.Warn("webhook: listing the suite's executions failed", "repo", repo, "sha", sha, "err", err)
		return nil
	}
	var refs []checkRef
	seen := map[string]bool{}
	for _, e := range rows { // newest first
		if e.CheckRunID <= 0 || e.Parent != "" || seen[e.Run] {
			continue
		}
		seen[e.Run] = true
		refs = append(refs, checkRef{e.Run, e.CheckRunID})
	}
	return refs
}

// fire evaluates one matching trigger. A panicking gate, key or inputs function is
// that trigger's failure only.
func (s *Server) fire(ctx context.Context, run dsl.Run, t dsl.Trigger, ev *dsl.WebhookEvent, origin string) (d *WebhookDispatched, sk *WebhookSkipped) {
	name := run.Spec().Name
	defer func() {
		if v := recover(); v != nil {
			s.Log.Error("webhook: trigger panicked", "run", name, "event", ev.Name, "panic", v)
			d, sk = nil, &WebhookSkipped{Run: name, Reason: "trigger_failed", Detail: fmt.Sprint(v)}
		}
	}()
	if t.Gate != nil && !t.Gate(ev) {
		return nil, &WebhookSkipped{Run: name, Reason: "gate"}
	}
	exec := t.IdempotencyKey(ev)
	if !ValidExecutionID(exec) {
		s.Log.Error("webhook: trigger made an invalid execution id", "run", name, "id", exec)
		return nil, &WebhookSkipped{Run: name, ExecutionID: exec, Reason: "invalid_execution_id"}
	}
	raw, err := json.Marshal(t.Inputs(ev))
	if err == nil {
		raw, err = run.DecodeInputs(raw)
	}
	if err != nil {
		s.Log.Warn("webhook: trigger inputs invalid", "run", name, "execution", exec, "err", err)
		return nil, &WebhookSkipped{Run: name, ExecutionID: exec, Reason: "invalid_inputs", Detail: err.Error()}
	}
	if cd, err := s.coolDown(ctx, run, ev.Repo(), exec, raw); err != nil {
		s.Log.Warn("webhook: cooldown check failed; starting anyway", "run", name, "execution", exec, "err", err)
	} else if cd.Cooling {
		return nil, &WebhookSkipped{Run: name, ExecutionID: cd.Prior, Reason: "cooldown", RetryAfterSec: cd.RetryAfterSec}
	}
	p := Params{Exec: exec, Run: name, Repo: ev.Repo(), Ref: ev.Ref(), SHA: ev.HeadSHA(),
		PRNumber: int(ev.Int("pull_request.number")), InstallationID: ev.Int("installation.id"),
		Inputs: raw, Origin: origin}
	st, err := s.Start(ctx, run, p)
	if err != nil {
		s.Log.Error("webhook: start failed", "run", name, "execution", exec, "err", err)
		return nil, &WebhookSkipped{Run: name, ExecutionID: exec, Reason: "start_failed", Detail: err.Error()}
	}
	return &WebhookDispatched{Run: name, ExecutionID: exec, Deduped: !st.Created}, nil
}

// rerun runs the execution behind one of our check-runs (check_run rerequested, or each
// of a suite's) again as "<execution>:rerun-<check-run id>", with the same run, target
// and inputs, and it reports to a new check-run.
func (s *Server) rerun(ctx context.Context, c checkRef, installation int64, origin string) (*WebhookDispatched, *WebhookSkipped) {
	checkID := c.id
	orig, ok, err := s.KV.Get(ctx, checkRunKey(checkID))
	if err != nil || !ok || checkID <= 0 {
		return nil, &WebhookSkipped{Run: c.run, Reason: "unknown_check_run", Detail: fmt.Sprintf("check-run %d was not created by this deploy", checkID)}
	}
	ex, err := s.Meta.Execution(ctx, orig)
	if err != nil {
		return nil, &WebhookSkipped{Run: c.run, ExecutionID: orig, Reason: "unknown_check_run", Detail: err.Error()}
	}
	var p Params
	if err := json.Unmarshal(ex.Input, &p); err != nil {
		return nil, &WebhookSkipped{Run: c.run, ExecutionID: orig, Reason: "unknown_check_run", Detail: "stored params: " + err.Error()}
	}
	run, ok := s.Runs[p.Run]
	if !ok {
		return nil, &WebhookSkipped{Run: p.Run, ExecutionID: orig, Reason: "unknown_check_run", Detail: "run no longer registered"}
	}
	root, _, _ := strings.Cut(orig, rerunSep) // a re-run of a re-run stays one level deep
	p.Exec = root + rerunSep + strconv.FormatInt(checkID, 10)
	if !ValidExecutionID(p.Exec) {
		return nil, &WebhookSkipped{Run: p.Run, ExecutionID: p.Exec, Reason: "invalid_execution_id"}
	}
	if installation > 0 {
		p.InstallationID = installation
	}
	p.Origin = origin
	st, err := s.Start(ctx, run, p)
	if err != nil {
		s.Log.Error("webhook: re-run failed to start", "execution", p.Exec, "err", err)
		return nil, &WebhookSkipped{Run: p.Run, ExecutionID: p.Exec, Reason: "start_failed", Detail: err.Error()}
	}
	return &WebhookDispatched{Run: p.Run, ExecutionID: p.Exec, Deduped: !st.Created, Rerun: true}, nil
}

// checkRunKey maps a check-run id to the execution it reports (written by project).
func checkRunKey(id int64) string { return "check-run-id:" + strconv.FormatInt(id, 10) }

// installationKey is where the installation id of a repository is learned.
func installationKey(repo string) string { return "installation:" + strings.ToLower(repo) }

// learnInstallations records installation ids from a delivery: the repository of any
// event carrying an installation, and the repository lists of installation and
// installation_repositories events (removed ones are forgotten). Best effort.
func (s *Server) learnInstallations(ctx context.Context, ev *dsl.WebhookEvent) {
	inst := ev.Int("installation.id")
	if inst <= 0 {
		return
	}
	put := func(repo string, id int64) {
		if !pattern.GitHubRepo(repo) {
			return
		}
		if err := s.KV.Put(ctx, installationKey(repo), strconv.FormatInt(id, 10), 0); err != nil {
			s.Log.Warn("webhook: recording installation failed", "repo", repo, "err", err)
		}
	}
	action := ev.String("action")
	gone := ev.Name == "installation" && (action == "deleted" || action == "suspend")
	if r := ev.String("repository.full_name"); r != "" && !gone {
		put(r, inst)
	}
	switch ev.Name {
	case "installation":
		for _, r := range ev.Strings("repositories", "full_name") {
			if gone {
				put(r, 0)
			} else {
				put(r, inst)
			}
		}
	case "installation_repositories":
		for _, r := range ev.Strings("repositories_added", "full_name") {
			put(r, inst)
		}
		for _, r := range ev.Strings("repositories_removed", "full_name") {
			put(r, 0)
		}
	}
}

// LearnedInstallation is the installation id last seen in a webhook for repo, or 0.
func (s *Server) LearnedInstallation(ctx context.Context, repo string) int64 {
	if s.KV == nil || repo == "" {
		return 0
	}
	v, ok, err := s.KV.Get(ctx, installationKey(repo))
	if err != nil || !ok {
		return 0
	}
	id, _ := strconv.ParseInt(v, 10, 64)
	return max(id, 0)
}
