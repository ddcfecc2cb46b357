package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// DispatchBody is the signed envelope of POST /v1/dispatch/:run (contract §2.1).
type DispatchBody struct {
	Run     string          `json:"run"`
	GitHub  DispatchGitHub  `json:"github"`
	Inputs  json.RawMessage `json:"inputs"`
	Trigger json.RawMessage `json:"trigger,omitempty"`
	Notify  *Notify         `json:"notify,omitempty"`
}

// Notify is a dispatch's notify block (contract §2.1): who gets the completion email
// and when (notify.go).
type Notify struct {
	Emails []string `json:"emails"`
	// On is "failure" (the default: failed, cancelled or timed out) or "always"
	// (successes too).
	On string `json:"on,omitempty"`
}

// DispatchGitHub is the envelope's target.
type DispatchGitHub struct {
	Repo           string `json:"repo"`
	Ref            string `json:"ref,omitempty"`
	SHA            string `json:"sha"`
	PRNumber       int    `json:"pr_number,omitempty"`
	Actor          string `json:"actor,omitempty"`
	InstallationID *int64 `json:"installation_id,omitempty"`
}

// Params is what an execution was started with, stored as executions.input_json.
type Params struct {
	Exec           string          `json:"executionId"`
	Run            string          `json:"run"`
	Repo           string          `json:"repo"`
	Ref            string          `json:"ref"`
	SHA            string          `json:"sha"`
	PRNumber       int             `json:"prNumber,omitempty"`
	InstallationID int64           `json:"installationId,omitempty"`
	Inputs         json.RawMessage `json:"inputs"`
	Origin         string          `json:"origin"`
	Parent         string          `json:"parentExecutionId,omitempty"`
	// Notify is the dispatch's notify block, when it named recipients.
	Notify *Notify `json:"notify,omitempty"`
	// OrderKey is the admission queue position of a child execution: its parent's
	// (children.go). Zero means the execution's own arrival.
	OrderKey time.Time `json:"orderKey,omitzero"`
}

// ValidRepoName reports whether s names a GitHub repository: an owner (letters,
// digits, dashes; 39 at most) and a name of letters, digits, dots, dashes and
// underscores (100 at most) that is not . or .. (those are paths, not repositories).
func ValidRepoName(s string) bool {
	_, name, _ := strings.Cut(s, "/")
	return pattern.GitHubRepo(s) && name != "." && name != ".."
}

// dispatchDedupTTL is how long IDEMPOTENCY_KV remembers a dispatch id (contract §2.3).
const dispatchDedupTTL = 24 * time.Hour

// validEmail is the shape ^[^@\s]+@[^@\s]+\.[^@\s]+$: one '@', no white space, a
// dot inside the domain.
func validEmail(e string) bool {
	local, domain, ok := strings.Cut(e, "@")
	return ok && local != "" && len(domain) >= 3 && !strings.ContainsAny(domain, "@") &&
		!strings.ContainsAny(e, " \t\n\f\r") && strings.Contains(domain[1:len(domain)-1], ".")
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	if s.Config.HMACSecret == "" {
		writeError(w, http.StatusServiceUnavailable, "dispatch_not_configured", "HMAC_SECRET is unset on this deploy")
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if !VerifySignature(s.Config.HMACSecret, body, r.Header.Get("X-FlareDispatch-Signature")) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "HMAC signature missing or invalid",
			"dispatcher_secret_fingerprint", Fingerprint(s.Config.HMACSecret))
		return
	}
	name := r.PathValue("run")
	run, ok := s.Runs[name]
	if !ok {
		writeError(w, http.StatusNotFound, "run_not_found", fmt.Sprintf("unknown run %q", name), "run", name)
		return
	}
	var d DispatchBody
	if err := json.Unmarshal(body, &d); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", "request body is not valid JSON", "detail", jsonErrorDetail(err), "field", jsonErrorField(err))
		return
	}
	if field, msg := validateEnvelope(d, name); field != "" {
		writeError(w, http.StatusBadRequest, "invalid_body", msg, "field", field, "detail", field+": "+msg)
		return
	}
	inputs, err := run.DecodeInputs(d.Inputs)
	if err != nil {
		field := "inputs"
		var fe *dsl.FieldError
		if errors.As(err, &fe) {
			field = "inputs." + fe.Field
		}
		writeError(w, http.StatusBadRequest, "invalid_inputs", fmt.Sprintf("inputs failed schema validation for run %q", name),
			"field", field, "detail", err.Error())
		return
	}
	exec := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if exec == "" {
		exec = DefaultExecutionID(d.Run, d.GitHub.Repo, d.GitHub.SHA) // always valid
	} else if !ValidExecutionID(exec) {
		writeError(w, http.StatusBadRequest, "invalid_idempotency_key", "Idempotency-Key must match ^[A-Za-z0-9:_-]{3,128}$", "field", "Idempotency-Key")
		return
	}
	// Contract §2.3 step 8: a dispatch id seen within 24 h answers at once, without
	// asking the run actor (a replayed Action step costs one KV read). The id is
	// recorded after the start succeeds, so a failed start can be retried.
	if s.IdempotencyKV != nil {
		if _, seen, err := s.IdempotencyKV.Get(r.Context(), exec); err == nil && seen {
			writeJSON(w, http.StatusAccepted, map[string]any{"executionId": exec, "logsUrl": s.LogLink(s.origin(r), exec),
				"detailsUrl": s.ViewerLink(s.origin(r), exec), "deduped": true})
			return
		}
	}
	if cd, err := s.coolDown(r.Context(), run, d.GitHub.Repo, exec, inputs); err != nil {
		s.Log.Warn("dispatch: cooldown check failed; starting anyway", "run", name, "execution", exec, "err", err)
	} else if cd.Cooling {
		writeJSON(w, http.StatusAccepted, map[string]any{"executionId": cd.Prior, "skipped": "cooldown", "retryAfterSec": cd.RetryAfterSec})
		return
	}
	p := Params{Exec: exec, Run: d.Run, Repo: d.GitHub.Repo, Ref: d.GitHub.Ref, SHA: d.GitHub.SHA, PRNumber: d.GitHub.PRNumber,
		Inputs: inputs, Origin: s.origin(r)}
	if d.Notify != nil && len(d.Notify.Emails) > 0 { // an empty list is dropped (contract §2.1)
		p.Notify = d.Notify
	}
	if d.GitHub.InstallationID != nil { // 0 is "unknown": Start uses the learned one
		p.InstallationID = *d.GitHub.InstallationID
	}
	st, err := s.Start(r.Context(), run, p)
	if err != nil {
		s.Log.Error("dispatch: start", "execution", exec, "err", err)
		writeError(w, http.StatusInternalServerError, "start_failed", "could not start the execution: "+err.Error())
		return
	}
	if s.IdempotencyKV != nil {
		if err := s.IdempotencyKV.Put(r.Context(), exec, exec, dispatchDedupTTL); err != nil {
			s.Log.Warn("dispatch: recording the id in IDEMPOTENCY_KV failed", "execution", exec, "err", err)
		}
	}
	// detailsUrl is the page the check-run links to: the log viewer (the original's
	// Workflows dashboard page has no counterpart here; specs/github.md).
	resp := map[string]any{"executionId": exec, "logsUrl": s.LogLink(p.Origin, exec), "detailsUrl": s.ViewerLink(p.Origin, exec),
		"status": st.Status}
	if !st.Created {
		resp["deduped"] = true
	}
	writeJSON(w, http.StatusAccepted, resp)
}

// Start records the execution and starts its run actor; starting an id that exists
// changes nothing and reports Created false (dedup by execution id).
func (s *Server) Start(ctx context.Context, run dsl.Run, p Params) (actors.RunStatus, error) {
	spec := run.Spec()
	if p.Ref == "" {
		p.Ref = "refs/heads/main"
	}
	if p.InstallationID == 0 { // learned from webhooks (webhooks.go)
		p.InstallationID = s.LearnedInstallation(ctx, p.Repo)
	}
	input, err := json.Marshal(p)
	if err != nil {
		return actors.RunStatus{}, err
	}
	created, err := s.Meta.CreateExecution(ctx, Execution{ID: p.Exec, Run: p.Run, Repo: p.Repo, Ref: p.Ref, SHA: p.SHA,
		Status: string(actors.StatusQueued), StartedAt: s.Now(), Parent: p.Parent, Input: input})
	if err != nil {
		return actors.RunStatus{}, fmt.Errorf("record execution: %w", err)
	}
	if !created {
		// A retry of a dispatch whose start failed: the row was ended (endUnstarted)
		// and no actor exists, so this Start owns the row as if it had created it.
		if created, err = s.reopenUnstarted(ctx, p.Exec); err != nil {
			return actors.RunStatus{}, err
		}
	}
	pool := spec.Pool
	if pool == "" {
		pool = dsl.PoolLean
	}
	sandbox := sandboxFor(p)
	reply, err := s.Actors.Call(ctx, actors.RunAddr(p.Exec), actors.RunStart{
		Exec: p.Exec, Run: p.Run, Pool: pool, Sandbox: sandbox,
		Parent: p.Parent, OrderKey: p.OrderKey, MaxDuration: spec.MaxDuration})
	if err != nil {
		if created {
			s.endUnstarted(ctx, p.Exec, err)
		}
		return actors.RunStatus{}, err
	}
	st, ok := reply.(actors.RunStatus)
	if !ok {
		return actors.RunStatus{}, fmt.Errorf("run actor answered %T", reply)
	}
	return st, nil
}

// startFailedTag is the failure tag of a row whose run actor could not be started.
const startFailedTag = "StartFailed"

// endUnstarted ends the row this Start created when its run actor could not be
// started (e.g. the actor store's disk is full): without an actor nothing would ever
// move it from queued. The caller answered 5xx, so a retry with the same id finds
// the row, reopens it (reopenUnstarted) and starts the actor.
func (s *Server) endUnstarted(ctx context.Context, exec string, cause error) {
	summary, _ := json.Marshal(map[string]any{"failure": actors.Failure{Tag: startFailedTag,
		Message: "could not start the execution: " + cause.Error() + "; dispatch it again with the same Idempotency-Key"}})
	if err := s.Meta.UpdateExecution(context.WithoutCancel(ctx), Execution{ID: exec, Status: string(actors.StatusFailure),
		CompletedAt: s.Now(), Summary: summary}); err != nil {
		s.Log.Error("dispatch: ending an execution whose start failed", "execution", exec, "err", err)
	}
}

// reopenUnstarted sets a row that endUnstarted ended back to queued, so that the run a
// retry starts is not shown failed and completed meanwhile (nor keeps the StartFailed
// summary if it ends without one). It reports whether it did; any other row is left
// alone (it has a run actor, or had one).
func (s *Server) reopenUnstarted(ctx context.Context, exec string) (bool, error) {
	ex, err := s.Meta.Execution(ctx, exec)
	if err != nil {
		return false, fmt.Errorf("read execution: %w", err)
	}
	var sum struct{ Failure *actors.Failure }
	if ex.Status != string(actors.StatusFailure) || json.Unmarshal(ex.Summary, &sum) != nil || sum.Failure == nil || sum.Failure.Tag != startFailedTag {
		return false, nil
	}
	if err := s.Meta.ReopenExecution(ctx, exec); err != nil {
		return false, fmt.Errorf("reopen execution: %w", err)
	}
	return true, nil
}

// sandboxFor is the sandbox an execution runs in.
func sandboxFor(p Params) string {
	if p.Parent != "" { // each child has a sandbox of its own (siblings share run, repo and sha)
		return SandboxID(p.Exec)
	}
	return SandboxID(SemanticID(p.Run, p.Repo, p.SHA))
}

// validateEnvelope returns the first wrong field and why.
func validateEnvelope(d DispatchBody, path string) (field, msg string) {
	switch {
	case d.Run == "":
		return "run", "is required"
	case d.Run != path:
		return "run", fmt.Sprintf("%q differs from the run in the path %q", d.Run, path)
	case d.GitHub.Repo == "":
		return "github.repo", "is required"
	case !ValidRepoName(d.GitHub.Repo):
		return "github.repo", fmt.Sprintf("%q is not a GitHub repository owner/name", d.GitHub.Repo)
	case d.GitHub.SHA == "":
		return "github.sha", "is required"
	case !ValidRefName(d.GitHub.SHA):
		return "github.sha", "is not a commit id (40 or 64 hex digits) nor a ref name git accepts (no control characters, spaces, .., ~^:?*[\\, @{, .lock)"
	case d.GitHub.InstallationID != nil && *d.GitHub.InstallationID < 0:
		return "github.installation_id", "must be a GitHub App installation id; 0 or absent means the one learned from webhooks, if any"
	case len(d.Inputs) == 0 || string(d.Inputs) == "null":
		return "inputs", "is required"
	}
	if d.Notify != nil {
		for i, e := range d.Notify.Emails {
			if !validEmail(e) {
				return fmt.Sprintf("notify.emails[%d]", i), fmt.Sprintf("%q is not an email address", e)
			}
		}
		if on := d.Notify.On; on != "" && on != NotifyOnFailure && on != NotifyAlways {
			return "notify.on", fmt.Sprintf("%q is neither %q nor %q", on, NotifyOnFailure, NotifyAlways)
		}
	}
	return "", ""
}

func jsonErrorDetail(err error) string { return err.Error() }

// jsonErrorField names the field of a JSON type error, when there is one.
func jsonErrorField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	return ""
}
