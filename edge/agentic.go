package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge/cooldown"
	"github.com/flare-dispatch/flare-dispatch/edge/model"
	"github.com/flare-dispatch/flare-dispatch/edge/oidc"
)

// The agentic capabilities the edge brokers (agentapi/agentic.go): model calls through
// the gateway, the run's pull request comment and failed workflow runs. Model keys,
// AWS credentials and the GitHub App key never leave the edge.

// Models is the model gateway (edge/model); nil on a deploy with no model backend.
type Models interface {
	Complete(ctx context.Context, r model.Request) (model.Result, error)
}

// PRCommenter keeps a run's comment on a pull request (the GitHub adapter).
type PRCommenter interface {
	FindComment(ctx context.Context, install int64, repo string, pr int, marker string) (PRComment, bool, error)
	PutComment(ctx context.Context, install int64, repo string, pr int, marker, body string) (PRComment, bool, error)
}

// PRComment is a pull request comment.
type PRComment struct {
	ID   int64
	URL  string
	Body string
}

// CIReader reads workflow runs (the GitHub adapter).
type CIReader interface {
	FailedRuns(ctx context.Context, install int64, repo string, since time.Time) ([]WorkflowRunInfo, error)
}

// WorkflowRunInfo is one workflow run.
type WorkflowRunInfo struct {
	ID                                        int64
	Name, Branch, SHA, Event, Conclusion, URL string
	UpdatedAt                                 time.Time
}

// maxCommentBody is GitHub's limit on a comment body.
const maxCommentBody = 65536

// capabilityFailed answers 424 with a typed failure the agent rebuilds.
func capabilityFailed(w http.ResponseWriter, err error) {
	f := dsl.AsFailure(err)
	writeJSON(w, http.StatusFailedDependency, agentapi.CapabilityFailure{Error: "capability_failed", Message: err.Error(), Failure: agentapi.Failure(f)})
}

// notDeclared answers 403 to a run that calls a capability its spec does not declare.
func notDeclared(w http.ResponseWriter, run dsl.Run, what, field string) {
	writeError(w, http.StatusForbidden, "not_declared", fmt.Sprintf("run %s does not declare %s (%s)", run.Spec().Name, what, field))
}

func (s *Server) agentModel(w http.ResponseWriter, r *http.Request) {
	var q agentapi.ModelCall
	id, p, run, ok := s.agentExecution(w, r, &q)
	if !ok {
		return
	}
	if !run.Spec().Needs.Model {
		notDeclared(w, run, "model calls", "Spec.Needs.Model")
		return
	}
	if s.Models == nil {
		capabilityFailed(w, &dsl.BackendUnconfigured{Backend: "any", Missing: []string{"a model backend on this deploy"}})
		return
	}
	req := model.Request{Backend: q.Backend, Model: q.Model, System: q.System, User: q.User, MaxTokens: q.MaxTokens,
		Temperature: q.Temperature, JSON: q.JSON, Subject: p.Run + ":" + id}
	for _, t := range q.Tools {
		req.Tools = append(req.Tools, t)
	}
	if q.AWS != nil {
		session := q.AWS.Session
		if session == "" {
			session = p.Run + "-" + shortSHA(p.SHA)
		}
		req.AWS = &model.AWS{RoleArn: q.AWS.RoleArn, Region: q.AWS.Region, Session: session}
	}
	start := s.Now()
	res, err := s.Models.Complete(r.Context(), req)
	s.recordUsage(r.Context(), id, res)
	s.Log.Info("model call", "execution", id, "backend", res.Backend, "model", res.Model, "inputTokens", res.InputTokens,
		"outputTokens", res.OutputTokens, "costMicroUsd", res.CostMicroUSD, "calls", res.Calls, "ms", s.Now().Sub(start).Milliseconds(), "err", err)
	if err != nil {
		capabilityFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, agentapi.ModelResponse{Text: res.Text, ToolCalls: res.ToolCalls, InputTokens: res.InputTokens,
		OutputTokens: res.OutputTokens, Model: res.Model, Backend: res.Backend, CostMicroUSD: res.CostMicroUSD})
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// ModelUsage is an execution's model usage so far (KV model-usage/<exec>).
type ModelUsage struct {
	Calls        int    `json:"calls"`
	InputTokens  int    `json:"inputTokens"`
	OutputTokens int    `json:"outputTokens"`
	CostMicroUSD int64  `json:"costMicroUsd"`
	Models       string `json:"models,omitempty"` // backend/model, comma-separated
}

func usageKey(exec string) string { return "model-usage/" + exec }

// recordUsage adds a call's tokens and cost to the execution's usage. Calls of one
// execution run in parallel (pr-review's reviewers), so the read-modify-write is
// serialised per edge; a lost update costs a count, not a run.
func (s *Server) recordUsage(ctx context.Context, exec string, res model.Result) {
	if res.Calls == 0 {
		return
	}
	usageMu.Lock()
	defer usageMu.Unlock()
	var u ModelUsage
	if v, found, err := s.KV.Get(ctx, usageKey(exec)); err == nil && found {
		_ = json.Unmarshal([]byte(v), &u)
	}
	u.Calls += res.Calls
	u.InputTokens += res.InputTokens
	u.OutputTokens += res.OutputTokens
	u.CostMicroUSD += res.CostMicroUSD
	if m := res.Backend + "/" + res.Model; !strings.Contains(","+u.Models+",", ","+m+",") {
		u.Models = strings.TrimPrefix(u.Models+","+m, ",")
	}
	b, _ := json.Marshal(u)
	if err := s.KV.Put(ctx, usageKey(exec), string(b), 0); err != nil {
		s.Log.Warn("model usage not recorded", "execution", exec, "err", err)
	}
}

// Usage is an execution's recorded model usage.
func (s *Server) Usage(ctx context.Context, exec string) (ModelUsage, bool) {
	var u ModelUsage
	v, found, err := s.KV.Get(ctx, usageKey(exec))
	if err != nil || !found {
		return u, false
	}
	return u, json.Unmarshal([]byte(v), &u) == nil
}

func (s *Server) agentFindComment(w http.ResponseWriter, r *http.Request) {
	s.agentComment(w, r, false)
}
func (s *Server) agentPutComment(w http.ResponseWriter, r *http.Request) { s.agentComment(w, r, true) }

func (s *Server) agentComment(w http.ResponseWriter, r *http.Request, put bool) {
	var q agentapi.CommentRequest
	id, p, run, ok := s.agentExecution(w, r, &q)
	if !ok {
		return
	}
	if !run.Spec().Needs.Comments {
		notDeclared(w, run, "pull request comments", "Spec.Needs.Comments")
		return
	}
	switch {
	case q.PR <= 0:
		writeError(w, http.StatusBadRequest, "invalid_body", "pr must be a pull request number", "field", "pr")
		return
	case !strings.HasPrefix(q.Marker, "<!-- flare-dispatch: ") || !strings.HasSuffix(q.Marker, " -->") || strings.ContainsAny(q.Marker, "\r\n"):
		writeError(w, http.StatusBadRequest, "invalid_body", "marker must be a <!-- flare-dispatch: … --> line", "field", "marker")
		return
	case put && (len(q.Body) > maxCommentBody || !strings.Contains(q.Body, q.Marker)):
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("body must hold the marker and be at most %d bytes", maxCommentBody), "field", "body")
		return
	}
	if !s.githubRepoAllowed(w, r.Context(), p, run, q.Repo) {
		return
	}
	gh, ok := s.GitHub.(PRCommenter)
	if !ok {
		writeError(w, http.StatusNotImplemented, "platform_not_supported", "this GitHub adapter cannot keep comments")
		return
	}
	var c PRComment
	var found, created bool
	var err error
	if put {
		c, created, err = gh.PutComment(r.Context(), p.InstallationID, q.Repo, q.PR, q.Marker, q.Body)
		found = true
	} else {
		c, found, err = gh.FindComment(r.Context(), p.InstallationID, q.Repo, q.PR, q.Marker)
	}
	if err != nil {
		s.githubFailed(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, agentapi.Comment{Found: found, ID: c.ID, URL: c.URL, Body: c.Body, Created: created})
}

func (s *Server) agentFailedRuns(w http.ResponseWriter, r *http.Request) {
	var q agentapi.FailedRunsRequest
	id, p, run, ok := s.agentExecution(w, r, &q)
	if !ok {
		return
	}
	if !run.Spec().Needs.CI {
		notDeclared(w, run, "workflow runs", "Spec.Needs.CI")
		return
	}
	if !s.githubRepoAllowed(w, r.Context(), p, run, q.Repo) {
		return
	}
	gh, ok := s.GitHub.(CIReader)
	if !ok {
		writeError(w, http.StatusNotImplemented, "platform_not_supported", "this GitHub adapter cannot read workflow runs")
		return
	}
	runs, err := gh.FailedRuns(r.Context(), p.InstallationID, q.Repo, q.Since)
	if err != nil {
		s.githubFailed(w, id, err)
		return
	}
	out := agentapi.FailedRuns{Runs: make([]agentapi.WorkflowRun, 0, len(runs))}
	for _, r := range runs {
		out.Runs = append(out.Runs, agentapi.WorkflowRun{ID: r.ID, Name: r.Name, Branch: r.Branch, SHA: r.SHA, Event: r.Event,
			Conclusion: r.Conclusion, URL: r.URL, UpdatedAt: r.UpdatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

// githubRepoAllowed: the execution's own repository, or one the operator listed in the
// run's Needs.ReposKey (a scheduled run scanning several repositories).
func (s *Server) githubRepoAllowed(w http.ResponseWriter, ctx context.Context, p Params, run dsl.Run, repo string) bool {
	if repo != p.Repo {
		if key := run.Spec().Needs.ReposKey; key != "" && repo != "" {
			if v, found, err := s.KV.Get(ctx, key); err == nil && found && listed(v, repo) {
				p.Repo = repo
			}
		}
	}
	return s.githubTarget(w, p, repo)
}

func listed(list, repo string) bool {
	for _, r := range strings.FieldsFunc(list, func(c rune) bool { return c == ',' || c == ' ' || c == '\n' }) {
		if r == repo {
			return true
		}
	}
	return false
}

// coolDown applies a run's cooldown (contract §5.6) to an execution about to start:
// cooling is true (with the earlier execution and the seconds left) inside the window.
func (s *Server) coolDown(ctx context.Context, run dsl.Run, repo, exec string, inputs json.RawMessage) (cooldown.Decision, error) {
	cd := run.Spec().Cooldown
	if cd == nil {
		return cooldown.Decision{}, nil
	}
	return cooldown.Check(ctx, s.KV, run.Spec().Name, repo, cd.Scope(inputs), cd.Window, exec, s.Now())
}

// usageMu serialises recordUsage within this edge.
var usageMu sync.Mutex

// oidcIssuer is the configured issuer, or an unconfigured one (its routes answer 503).
func (s *Server) oidcIssuer() *oidc.Issuer {
	if s.OIDC != nil {
		return s.OIDC
	}
	return &oidc.Issuer{}
}

// AgenticFromEnv builds the model gateway and the OIDC issuer from the Worker's own
// names (both platforms call it): model.EnvFrom's variables, MODEL_PRICES (JSON: model
// → {inputPerMTok, outputPerMTok}), OIDC_ISSUER_URL + OIDC_SIGNING_JWK, and
// AWS_STS_ENDPOINT (tests). A malformed key or price table is logged and left out.
func AgenticFromEnv(getenv func(string) string, doer HTTPDoer, log *slog.Logger) (Models, *oidc.Issuer) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	iss, err := oidc.New(getenv("OIDC_ISSUER_URL"), getenv("OIDC_SIGNING_JWK"))
	if err != nil {
		log.Error("OIDC issuer disabled", "err", err)
		iss = &oidc.Issuer{}
	}
	var prices map[string]model.Price
	if p := getenv("MODEL_PRICES"); p != "" {
		if err := json.Unmarshal([]byte(p), &prices); err != nil {
			log.Error("MODEL_PRICES is not a JSON price table; costs are not recorded", "err", err)
			prices = nil
		}
	}
	def, backends := model.Backends(model.EnvFrom(getenv))
	g := model.New(doer, def, backends, prices)
	if iss.Configured() {
		g.WithBedrock(iss, getenv("AWS_STS_ENDPOINT"))
	}
	return g, iss
}
