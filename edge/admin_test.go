package edge_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

func (f *fixture) adminEvent(id, token, body string) reply {
	req := httptest.NewRequest(http.MethodPost, "/v1/admin/events/"+id, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return f.do(req)
}

func TestAdminEventsAreOffWithoutAnAdminToken(t *testing.T) {
	f := newFixture(t, edge.Config{})
	r := f.adminEvent("exec-1", "anything", `{"type":"approve"}`)
	if r.status != 503 || r.body["error"] != "admin_not_configured" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

func TestAdminEventDeliversOnceAndRefusesASecondDecision(t *testing.T) {
	f := newFixture(t, edge.Config{AdminToken: "adm-token"})
	f.meta.CreateExecution(t.Context(), edge.Execution{ID: "exec-1", Run: "pr"})
	f.actors.setStatus("exec-1", actors.StatusWaiting)

	cases := []struct {
		name, id, token, body string
		status                int
		code                  string
	}{
		{"no token", "exec-1", "", `{"type":"approve"}`, 401, "unauthorized"},
		{"wrong token", "exec-1", "adm-tokem", `{"type":"approve"}`, 401, "unauthorized"},
		{"token prefix", "exec-1", "adm", `{"type":"approve"}`, 401, "unauthorized"},
		{"bad id", "a", "adm-token", `{"type":"approve"}`, 400, "invalid_execution_id"},
		{"not json", "exec-1", "adm-token", `{"type":`, 400, "invalid_json"},
		{"no type", "exec-1", "adm-token", `{"payload":{}}`, 400, "invalid_body"},
		{"type not a string", "exec-1", "adm-token", `{"type":3}`, 400, "invalid_json"},
		{"unknown execution", "exec-2", "adm-token", `{"type":"approve"}`, 404, "wf_not_found"},
	}
	for _, c := range cases {
		r := f.adminEvent(c.id, c.token, c.body)
		if r.status != c.status || r.body["error"] != c.code {
			t.Errorf("%s: %d %s", c.name, r.status, r.raw)
		}
	}
	r := f.adminEvent("exec-1", "adm-token", `{"type":"approve","payload":{"by":"ada"}}`)
	if r.status != 202 || r.body["delivered"] != true || r.body["wfId"] != "exec-1" || r.body["type"] != "approve" {
		t.Fatalf("first decision: %d %s", r.status, r.raw)
	}
	r = f.adminEvent("exec-1", "adm-token", `{"type":"approve","payload":{"by":"bob"}}`)
	if r.status != 409 || r.body["error"] != "duplicate_event" {
		t.Fatalf("second decision: %d %s", r.status, r.raw)
	}
	// Another type is another decision.
	if r := f.adminEvent("exec-1", "adm-token", `{"type":"reject"}`); r.status != 202 {
		t.Fatalf("other type: %d %s", r.status, r.raw)
	}
	f.actors.setStatus("exec-1", actors.StatusSuccess)
	if r := f.adminEvent("exec-1", "adm-token", `{"type":"later"}`); r.status != 409 || r.body["error"] != "execution_ended" {
		t.Fatalf("ended execution: %d %s", r.status, r.raw)
	}
	if r := f.do(httptest.NewRequest(http.MethodGet, "/v1/admin/events/exec-1", nil)); r.status != 405 {
		t.Fatalf("GET: %d", r.status)
	}
}
