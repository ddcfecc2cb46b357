package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// Fan-out and suspension on the agent API:
//
//	POST /v1/agent/:exec/suspend          {attempt, until?, children?, event?} → the run waits
//	POST /v1/agent/:exec/children         {attempt, failFast?, children:[{key, run, inputs}]}
//	POST /v1/agent/:exec/children/status  {attempt} → every child's status, output, failure
//
// A child is an execution of its own (row, run actor, sandbox, logs, journal) with
// parent_execution_id set, id <parent>:<key>, and its parent's place in the admission
// queue. The group (which children, fail-fast or not) is kept in KV under
// children/<parent>: fail-fast is the edge's job (childProgress cancels the siblings of
// a child that ended badly), so the run actor only waits for all of them to end.

// childGroup is KV children/<parent>.
type childGroup struct {
	FailFast bool          `json:"failFast,omitempty"`
	Children []childMember `json:"children"`
}

type childMember struct {
	Key  string `json:"key"`
	Exec string `json:"exec"`
	Run  string `json:"run"`
}

var (
	childKeyChars = pattern.NewSet("A-Za-z0-9_-")
	eventChars    = pattern.NewSet("A-Za-z0-9._:-")
)

func childrenKey(parent string) string { return "children/" + parent }

func (s *Server) childGroup(ctx context.Context, parent string) (childGroup, bool, error) {
	var g childGroup
	v, found, err := s.KV.Get(ctx, childrenKey(parent))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return g, false, err
	}
	if !found {
		return g, false, nil
	}
	if err := json.Unmarshal([]byte(v), &g); err != nil {
		return g, false, fmt.Errorf("children of %s: %w", parent, err)
	}
	return g, true, nil
}

// agentSuspend ends the attempt without ending the run (actors.AgentSuspend).
func (s *Server) agentSuspend(w http.ResponseWriter, r *http.Request) {
	var q agentapi.Suspend
	id, c, ok := s.agentRequest(w, r, &q)
	if !ok {
		return
	}
	switch {
	case q.Until.IsZero() && len(q.Children) == 0 && q.Event == "":
		writeError(w, http.StatusBadRequest, "invalid_body", "suspend needs until, children or event", "field", "until")
		return
	case len(q.Children) > dsl.MaxChildren:
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("at most %d children", dsl.MaxChildren), "field", "children")
		return
	case q.Event != "" && !eventChars.Run(q.Event, 1, 100):
		writeError(w, http.StatusBadRequest, "invalid_body", "event must match ^[A-Za-z0-9._:-]{1,100}$", "field", "event")
		return
	}
	if len(q.Children) > 0 {
		g, _, err := s.childGroup(r.Context(), id)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "kv_error", err.Error())
			return
		}
		mine := map[string]bool{}
		for _, m := range g.Children {
			mine[m.Exec] = true
		}
		for i, ch := range q.Children {
			if !mine[ch] {
				writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("%q is not a child of %s", ch, id), "field", fmt.Sprintf("children[%d]", i))
				return
			}
		}
	}
	if _, ok := s.callRun(w, r, id, actors.AgentSuspend{Exec: id, Attempt: c.Attempt, Until: q.Until, Children: q.Children, Event: q.Event}); ok {
		s.Log.Info("run suspended", "execution", id, "attempt", c.Attempt, "until", q.Until, "children", len(q.Children), "event", q.Event)
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	}
}

// agentSpawnChildren starts child executions (idempotent per child id).
func (s *Server) agentSpawnChildren(w http.ResponseWriter, r *http.Request) {
	var q agentapi.SpawnChildren
	id, _, ok := s.agentLive(w, r, &q)
	if !ok {
		return
	}
	if len(q.Children) == 0 || len(q.Children) > dsl.MaxChildren {
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("1 to %d children", dsl.MaxChildren), "field", "children")
		return
	}
	parent, err := s.Meta.Execution(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return
	}
	var pp Params
	if err := json.Unmarshal(parent.Input, &pp); err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", "parent params: "+err.Error())
		return
	}
	order := pp.OrderKey // a grandchild keeps the first ancestor's place
	if order.IsZero() {
		order = parent.StartedAt
	}

	type planned struct {
		member childMember
		run    dsl.Run
		inputs json.RawMessage
	}
	plan := make([]planned, 0, len(q.Children))
	seen := map[string]bool{}
	for i, ch := range q.Children {
		field := fmt.Sprintf("children[%d]", i)
		run, known := s.Runs[ch.Run]
		switch {
		case !childKeyChars.Run(ch.Key, 1, 40):
			writeError(w, http.StatusBadRequest, "invalid_body", "key must match ^[A-Za-z0-9_-]{1,40}$", "field", field+".key")
			return
		case seen[ch.Key]:
			writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("key %q used twice", ch.Key), "field", field+".key")
			return
		case !known:
			writeError(w, http.StatusNotFound, "run_not_found", fmt.Sprintf("unknown run %q", ch.Run), "field", field+".run")
			return
		}
		seen[ch.Key] = true
		childID := id + ":" + ch.Key
		if !ValidExecutionID(childID) {
			writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("child id %q is not a valid execution id (at most 128 characters)", childID), "field", field+".key")
			return
		}
		inputs, err := run.DecodeInputs(ch.Inputs)
		if err != nil {
			f := field + ".inputs"
			var fe *dsl.FieldError
			if errors.As(err, &fe) && fe.Field != "" {
				f += "." + fe.Field
			}
			writeError(w, http.StatusBadRequest, "invalid_inputs", fmt.Sprintf("inputs failed schema validation for run %q", ch.Run), "field", f, "detail", err.Error())
			return
		}
		plan = append(plan, planned{member: childMember{Key: ch.Key, Exec: childID, Run: ch.Run}, run: run, inputs: inputs})
	}

	// Record the group before any child starts, so a child that ends at once finds it.
	g, _, err := s.childGroup(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "kv_error", err.Error())
		return
	}
	g.FailFast = g.FailFast || q.FailFast
	have := map[string]bool{}
	for _, m := range g.Children {
		have[m.Exec] = true
	}
	for _, p := range plan {
		if !have[p.member.Exec] {
			g.Children = append(g.Children, p.member)
		}
	}
	b, _ := json.Marshal(g)
	if err := s.KV.Put(r.Context(), childrenKey(id), string(b), 0); err != nil {
		writeError(w, http.StatusInternalServerError, "kv_error", err.Error())
		return
	}

	out := agentapi.Spawned{Children: make([]agentapi.SpawnedChild, 0, len(plan))}
	for _, p := range plan {
		st, err := s.Start(r.Context(), p.run, Params{
			Exec: p.member.Exec, Run: p.member.Run, Repo: pp.Repo, Ref: pp.Ref, SHA: pp.SHA, PRNumber: pp.PRNumber,
			InstallationID: pp.InstallationID, Inputs: p.inputs, Origin: pp.Origin, Parent: id, OrderKey: order,
		})
		if err != nil {
			s.Log.Error("spawn child", "execution", id, "child", p.member.Exec, "err", err)
			writeError(w, http.StatusInternalServerError, "start_failed", fmt.Sprintf("could not start child %s: %v", p.member.Exec, err))
			return
		}
		out.Children = append(out.Children, agentapi.SpawnedChild{Key: p.member.Key, Exec: p.member.Exec, Status: string(st.Status), Created: st.Created})
	}
	s.Log.Info("children spawned", "execution", id, "children", len(plan), "failFast", g.FailFast)
	writeJSON(w, http.StatusOK, out)
}

// agentChildrenStatus reports every child of the execution: the run actor's status and
// failure, the projected output and times.
func (s *Server) agentChildrenStatus(w http.ResponseWriter, r *http.Request) {
	var a agentapi.Attempt
	id, _, ok := s.agentLive(w, r, &a)
	if !ok {
		return
	}
	g, _, err := s.childGroup(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "kv_error", err.Error())
		return
	}
	origin := s.origin(r)
	if parent, err := s.Meta.Execution(r.Context(), id); err == nil {
		var pp Params
		if json.Unmarshal(parent.Input, &pp) == nil && pp.Origin != "" {
			origin = pp.Origin
		}
	}
	out := agentapi.ChildrenStatus{FailFast: g.FailFast, Children: make([]agentapi.ChildStatus, 0, len(g.Children))}
	for _, m := range g.Children {
		cs, err := s.childStatus(r.Context(), m, origin)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "actor_unavailable", err.Error())
			return
		}
		out.Children = append(out.Children, cs)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) childStatus(ctx context.Context, m childMember, origin string) (agentapi.ChildStatus, error) {
	cs := agentapi.ChildStatus{Key: m.Key, Exec: m.Exec, Run: m.Run, LogsURL: s.ViewerLink(origin, m.Exec)} // shown to people in the parent's summary
	reply, err := s.Actors.Call(ctx, actors.RunAddr(m.Exec), actors.RunQuery{Exec: m.Exec})
	if err != nil {
		return cs, fmt.Errorf("child %s: %w", m.Exec, err)
	}
	st, _ := reply.(actors.RunStatus)
	cs.Status = string(st.Status)
	cs.Failure = toWire(st.Failure)
	if ex, err := s.Meta.Execution(ctx, m.Exec); err == nil {
		cs.StartedAt, cs.CompletedAt = ex.StartedAt, ex.CompletedAt
		if cs.Status == "" {
			cs.Status = ex.Status // the actor is gone (long finished); the row remains
		}
		if st.Status.Terminal() || actors.Status(cs.Status).Terminal() {
			cs.Output = ex.Summary
		}
	}
	if cs.Status == "" {
		cs.Status = string(actors.StatusQueued) // spawned, not yet recorded anywhere
	}
	return cs, nil
}

// childProgress keeps a fan-out consistent as its executions progress: when a child
// of a fail-fast group ends in anything but success, its siblings are cancelled; when
// a parent ends, its children still running are cancelled (a cancelled or timed-out
// parent leaves nothing behind).
func (s *Server) childProgress(ctx context.Context, ex Execution, p actors.Progress) {
	if !p.Status.Terminal() {
		return
	}
	cancel := func(child, reason string) {
		if err := s.Actors.Send(actors.RunAddr(child), actors.RunCancel{Exec: child, Reason: reason}); err != nil {
			s.Log.Warn("cancel child", "execution", child, "err", err)
		}
	}
	if ex.Parent != "" && p.Status != actors.StatusSuccess {
		if g, found, err := s.childGroup(ctx, ex.Parent); err == nil && found && g.FailFast {
			for _, m := range g.Children {
				if m.Exec != ex.ID {
					cancel(m.Exec, fmt.Sprintf("fail-fast: %s ended %s", ex.ID, p.Status))
				}
			}
		}
	}
	if g, found, err := s.childGroup(ctx, ex.ID); err == nil && found && p.Status != actors.StatusSuccess {
		for _, m := range g.Children {
			cancel(m.Exec, fmt.Sprintf("the parent execution ended %s", p.Status))
		}
	}
}
