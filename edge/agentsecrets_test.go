package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Secrets reach only the execution that declared them (issue 9, observed item 7: the
// route used to serve any CONFIG_KV key to any live agent). Every refusal below was
// served before the check.

var neededRun = dsl.Define(dsl.Spec{Name: "needs-secrets", Version: "1.0.0", MaxDuration: time.Minute,
	Needs: dsl.Needs{Secrets: []string{"shared/DEPLOY_KEY", "check-run/forged"}}},
	func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })

type secretsHarness struct {
	srv  *edge.Server
	meta *memMeta
	kv   *memKV
}

func newSecretsHarness(t *testing.T) *secretsHarness {
	h := &secretsHarness{meta: newMeta(), kv: newKV()}
	h.srv = edge.New(edge.Deps{Config: edge.Config{HMACSecret: testSecret}, Runs: dsl.NewRegistry(shardRun, parentRun, neededRun),
		Meta: h.meta, KV: h.kv, Actors: newDSLActors()})
	ctx := context.Background()
	for k, v := range map[string]string{
		"ci-a/TOKEN": "a-token", "ci-a/OTHER": "a-other", "ci-b/TOKEN": "b-token",
		"shared/DEPLOY_KEY": "deploy", "check-run/exec-b": `{"logToken":"b-log-token"}`, "check-run/forged": "x",
	} {
		h.kv.Put(ctx, k, v, 0)
	}
	h.add("exec-a", "offload-test", "", `{"command":"x","secrets":["TOKEN"],"secretPrefix":"ci-a/"}`)
	h.add("exec-b", "offload-test", "", `{"command":"x","secrets":["TOKEN"],"secretPrefix":"ci-b/"}`)
	h.add("exec-n", "needs-secrets", "", `{}`)
	return h
}

func (h *secretsHarness) add(id, run, parent, inputs string) {
	p, _ := json.Marshal(edge.Params{Exec: id, Run: run, Repo: "acme/app", SHA: "abc", Parent: parent, Inputs: json.RawMessage(inputs)})
	h.meta.CreateExecution(context.Background(), edge.Execution{ID: id, Run: run, Repo: "acme/app", Parent: parent, Input: p})
}

// secrets asks for keys under prefix as an agent of exec, attempt 1.
func (h *secretsHarness) secrets(t *testing.T, exec, prefix string, keys ...string) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"attempt": 1, "keys": keys, "prefix": prefix})
	req := httptest.NewRequest(http.MethodPost, "/v1/agent/"+exec+"/secrets", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+edge.MintAgentToken(edge.Config{HMACSecret: testSecret},
		edge.AgentClaims{Exec: exec, Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()}))
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func TestSecretsServeExactlyTheDeclaredKeys(t *testing.T) {
	h := newSecretsHarness(t)
	code, out := h.secrets(t, "exec-a", "ci-a/", "TOKEN")
	if vals, _ := out["values"].(map[string]any); code != 200 || vals["TOKEN"] != "a-token" || len(vals) != 1 {
		t.Fatalf("declared key: %d %v", code, out)
	}
	code, out = h.secrets(t, "exec-n", "", "shared/DEPLOY_KEY")
	if vals, _ := out["values"].(map[string]any); code != 200 || vals["shared/DEPLOY_KEY"] != "deploy" {
		t.Fatalf("Needs.Secrets key: %d %v", code, out)
	}
	for _, c := range []struct {
		name, exec, prefix string
		keys               []string
	}{
		{"another execution's check-run record", "exec-a", "check-run/", []string{"exec-b"}},
		{"the same record as a whole key", "exec-a", "", []string{"check-run/exec-b"}},
		{"another run's namespace", "exec-a", "ci-b/", []string{"TOKEN"}},
		{"an undeclared key under the declared prefix", "exec-a", "ci-a/", []string{"OTHER"}},
		{"a declared key outside the prefix", "exec-a", "", []string{"TOKEN"}},
		{"a declared key among undeclared ones", "exec-a", "ci-a/", []string{"TOKEN", "OTHER"}},
		{"an empty key (the prefix alone)", "exec-a", "ci-a/TOKEN", []string{""}},
		{"a reserved key even when the spec declares it", "exec-n", "", []string{"check-run/forged"}},
		{"another run's Needs.Secrets", "exec-a", "", []string{"shared/DEPLOY_KEY"}},
	} {
		code, out := h.secrets(t, c.exec, c.prefix, c.keys...)
		if code != http.StatusForbidden || out["error"] != "secret_not_declared" || out["values"] != nil {
			t.Errorf("%s: %d %v", c.name, code, out)
		}
	}
}

// A child's inputs come from its parent's agent (the pull request's code can forge
// them), so a child may load only what its parent may: a forged child declaring
// another run's prefix gets nothing.
func TestChildSecretsStayInsideTheParents(t *testing.T) {
	h := newSecretsHarness(t)
	h.add("exec-a:ok", "offload-test", "exec-a", `{"command":"x","secrets":["TOKEN"],"secretPrefix":"ci-a/"}`)
	h.add("exec-a:forged", "offload-test", "exec-a", `{"command":"x","secrets":["TOKEN"],"secretPrefix":"ci-b/"}`)
	if code, out := h.secrets(t, "exec-a:ok", "ci-a/", "TOKEN"); code != 200 {
		t.Fatalf("child with the parent's secret: %d %v", code, out)
	}
	if code, out := h.secrets(t, "exec-a:forged", "ci-b/", "TOKEN"); code != http.StatusForbidden {
		t.Fatalf("child declaring another prefix: %d %v", code, out)
	}
}
