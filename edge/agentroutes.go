package edge

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
)

// maxStepResult is a step result's limit (as Workflows' step.do had).
const maxStepResult = 1 << 20

// agentRequest authenticates an agent API call and decodes its body; the body's
// attempt must be the token's.
func (s *Server) agentRequest(w http.ResponseWriter, r *http.Request, into any) (string, AgentClaims, bool) {
	id := r.PathValue("id")
	claims, err := VerifyAgentToken(s.Config, bearer(r), id, s.Now())
	if err == nil && claims.Scope != "" {
		err = fmt.Errorf("%w: a %s token does not open the agent API", errBadToken, claims.Scope)
	}
	if err != nil {
		writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
		return "", claims, false
	}
	body, ok := readBody(w, r)
	if !ok {
		return "", claims, false
	}
	if err := json.Unmarshal(body, into); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_body", "request body is not valid JSON: "+err.Error())
		return "", claims, false
	}
	var a agentapi.Attempt
	_ = json.Unmarshal(body, &a)
	if a.Attempt != claims.Attempt {
		writeError(w, http.StatusForbidden, "wrong_attempt", fmt.Sprintf("token is for attempt %d, body says %d", claims.Attempt, a.Attempt), "field", "attempt")
		return "", claims, false
	}
	return id, claims, true
}

// agentLive is agentRequest for the routes that are not themselves journal messages:
// it also checks with the run actor that the attempt is current (counting as a
// heartbeat), answering 409 when it is not.
func (s *Server) agentLive(w http.ResponseWriter, r *http.Request, into any) (string, AgentClaims, bool) {
	id, c, ok := s.agentRequest(w, r, into)
	if !ok {
		return "", c, false
	}
	if _, ok := s.callRun(w, r, id, actors.AgentHeartbeat{Exec: id, Attempt: c.Attempt}); !ok {
		return "", c, false
	}
	return id, c, true
}

// callRun sends an agent message to the run actor and answers a refusal with 409.
func (s *Server) callRun(w http.ResponseWriter, r *http.Request, id string, m actors.Message) (actors.Message, bool) {
	reply, err := s.Actors.Call(r.Context(), actors.RunAddr(id), m)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "actor_unavailable", err.Error())
		return nil, false
	}
	if ack, ok := reply.(actors.AgentAck); ok && !ack.OK {
		code := "stopped"
		if ack.Superseded {
			code = "superseded"
		}
		writeError(w, http.StatusConflict, code, ack.Reason)
		return nil, false
	}
	return reply, true
}

func (s *Server) agentHeartbeat(w http.ResponseWriter, r *http.Request) {
	var a agentapi.Attempt
	id, c, ok := s.agentRequest(w, r, &a)
	if !ok {
		return
	}
	if _, ok := s.callRun(w, r, id, actors.AgentHeartbeat{Exec: id, Attempt: c.Attempt}); ok {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	}
}

func (s *Server) agentStepBegin(w http.ResponseWriter, r *http.Request) {
	var a agentapi.Attempt
	id, c, ok := s.agentRequest(w, r, &a)
	if !ok {
		return
	}
	reply, ok := s.callRun(w, r, id, actors.StepBegin{Exec: id, Attempt: c.Attempt, Step: r.PathValue("step")})
	if !ok {
		return
	}
	d, _ := reply.(actors.StepDecision)
	if d.Stop || d.Superseded {
		writeError(w, http.StatusConflict, "stopped", "the run is over")
		return
	}
	writeJSON(w, http.StatusOK, agentapi.StepDecision{Done: d.Done, Result: d.Result, Failure: toWire(d.Failure)})
}

func (s *Server) agentStepEnd(w http.ResponseWriter, r *http.Request) {
	var e agentapi.StepEnd
	id, c, ok := s.agentRequest(w, r, &e)
	if !ok {
		return
	}
	if len(e.Result) > maxStepResult {
		writeError(w, http.StatusBadRequest, "result_too_large", "a step result is limited to 1 MiB", "field", "result")
		return
	}
	if _, ok := s.callRun(w, r, id, actors.StepEnd{Exec: id, Attempt: c.Attempt, Step: r.PathValue("step"), Result: e.Result, Failure: fromWire(e.Failure)}); ok {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	}
}

func (s *Server) agentExit(w http.ResponseWriter, r *http.Request) {
	var e agentapi.Exit
	id, c, ok := s.agentRequest(w, r, &e)
	if !ok {
		return
	}
	if len(e.Output) > maxStepResult {
		writeError(w, http.StatusBadRequest, "output_too_large", "a run output is limited to 1 MiB", "field", "output")
		return
	}
	if _, ok := s.callRun(w, r, id, actors.AgentExit{Exec: id, Attempt: c.Attempt, Output: e.Output, Failure: fromWire(e.Failure)}); ok {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	}
}

// toWire and fromWire are type conversions, not copies field by field: actors.Failure
// and agentapi.Failure (dsl.Failure) have the same fields because both packages import
// only the standard library, and the conversion stops compiling if they drift apart.
func toWire(f *actors.Failure) *agentapi.Failure { return (*agentapi.Failure)(f) }

func fromWire(f *agentapi.Failure) *actors.Failure { return (*actors.Failure)(f) }

// agentGitCredentials gives the agent a short-lived token to clone the execution's
// own repository, and nothing else; an empty token means clone anonymously.
func (s *Server) agentGitCredentials(w http.ResponseWriter, r *http.Request) {
	var q agentapi.GitCredentialsRequest
	id, p, _, ok := s.agentExecution(w, r, &q)
	if !ok {
		return
	}
	if q.Repo != p.Repo {
		writeError(w, http.StatusForbidden, "repo_not_allowed", fmt.Sprintf("execution %s may clone %s, not %s", id, p.Repo, q.Repo), "field", "repo")
		return
	}
	if s.Tokens == nil {
		writeJSON(w, http.StatusOK, agentapi.GitCredentials{})
		return
	}
	tok, exp, err := s.Tokens.RepoToken(r.Context(), p.Repo, p.InstallationID)
	if err != nil {
		writeError(w, http.StatusBadGateway, "github_token_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, agentapi.GitCredentials{Token: tok, Expires: exp})
}
