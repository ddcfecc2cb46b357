package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// Admin events (contract §3): POST /v1/admin/events/:id delivers {type, payload} to the
// execution's run actor, which records the first event of each type in its journal
// (step "event:<type>") and wakes a run suspended in dsl.WaitForEvent. A second event
// of the same type is a second decision: 409, for as long as the execution exists (the
// contract's debounce window, made permanent: a recorded decision is never replaced).

var eventTypeChars = pattern.NewSet("A-Za-z0-9._-")

// AdminEvent is the body of POST /v1/admin/events/:id.
type AdminEvent struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// adminAuthorized checks Authorization: Bearer ADMIN_TOKEN in constant time (the
// comparison is over SHA-256 digests, so not even the token's length leaks). It writes
// the 503 or 401 itself.
func (s *Server) adminAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.Config.AdminToken == "" {
		writeError(w, http.StatusServiceUnavailable, "admin_not_configured", "ADMIN_TOKEN is unset on this deploy")
		return false
	}
	got, want := sha256.Sum256([]byte(bearer(r))), sha256.Sum256([]byte(s.Config.AdminToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer <ADMIN_TOKEN> missing or invalid")
		return false
	}
	return true
}

func (s *Server) adminEvent(w http.ResponseWriter, r *http.Request) {
	if !s.adminAuthorized(w, r) {
		return
	}
	id := r.PathValue("id")
	if !ValidExecutionID(id) {
		writeError(w, http.StatusBadRequest, "invalid_execution_id", "execution id must match ^[A-Za-z0-9:_-]{3,128}$", "field", "id")
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var ev AdminEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "request body is not valid JSON", "detail", err.Error())
		return
	}
	if !eventTypeChars.Run(ev.Type, 1, 64) {
		writeError(w, http.StatusBadRequest, "invalid_body", "type must be a non-empty string matching ^[A-Za-z0-9._-]{1,64}$", "field", "type")
		return
	}
	if len(ev.Payload) == 0 {
		ev.Payload = json.RawMessage("null")
	}
	ctx := r.Context()
	if _, err := s.Meta.Execution(ctx, id); err != nil {
		if errors.Is(err, ErrNotFound) {
			writeError(w, http.StatusNotFound, "wf_not_found", fmt.Sprintf("execution %q not found", id), "wfId", id)
			return
		}
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return
	}
	reply, err := s.Actors.Call(ctx, actors.RunAddr(id), actors.RunEvent{Exec: id, Kind: ev.Type, Payload: ev.Payload})
	if err != nil {
		writeError(w, http.StatusBadGateway, "send_event_failed", "could not deliver the event: "+err.Error(), "wfId", id)
		return
	}
	ack, ok := reply.(actors.RunEventAck)
	switch {
	case !ok:
		writeError(w, http.StatusBadGateway, "send_event_failed", fmt.Sprintf("run actor answered %T", reply), "wfId", id)
	case ack.Delivered:
		writeJSON(w, http.StatusAccepted, map[string]any{"delivered": true, "wfId": id, "type": ev.Type})
	case ack.Duplicate:
		writeError(w, http.StatusConflict, "duplicate_event", fmt.Sprintf("execution %s already received a %q event; a decision is final", id, ev.Type),
			"wfId", id, "type", ev.Type)
	case ack.Status == "":
		writeError(w, http.StatusNotFound, "wf_not_found", fmt.Sprintf("execution %q not found", id), "wfId", id)
	default: // the execution has ended
		writeError(w, http.StatusConflict, "execution_ended", fmt.Sprintf("execution %s has ended (%s); it waits for no event", id, ack.Status),
			"wfId", id, "status", ack.Status)
	}
}
