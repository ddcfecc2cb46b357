package porttest

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// The Sandboxes contract: agents as local child processes (edge/local/sandboxes) and
// the Containers adapter (edge/cloudflare/containers). The agent behind each is
// FakeAgent, which records what reached it: the contract is about delivery to the
// right sandbox, not about what an agent then does.

// AgentRequest is one request that reached a sandbox's agent.
type AgentRequest struct {
	Path    string `json:"path"`
	Exec    string `json:"exec"`
	Attempt int    `json:"attempt"`
}

// RefuseExec is an execution FakeAgent refuses to start (409), as a busy agent does.
const RefuseExec = "refuse-me"

// FakeAgent answers POST /start (202) and POST /cancel (200) as `flare agent` does, and
// hands each request to record.
func FakeAgent(record func(AgentRequest)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != agentapi.PathStart && r.URL.Path != agentapi.PathCancel {
			http.NotFound(w, r)
			return
		}
		var q AgentRequest
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q.Path = r.URL.Path
		record(q)
		switch {
		case q.Path == agentapi.PathStart && q.Exec == RefuseExec:
			http.Error(w, `{"error":"busy"}`, http.StatusConflict)
		case q.Path == agentapi.PathStart:
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
}

// SandboxFixture is a Sandboxes adapter and what reached each sandbox's agent.
type SandboxFixture struct {
	Sandboxes edge.Sandboxes
	Seen      func(sandbox string) []AgentRequest
}

// Sandboxes runs the contract; newSandboxes is called once per subtest.
func Sandboxes[R Runner[R]](t R, prefix string, newSandboxes func(t R) SandboxFixture) {
	run(t, withPrefix(sandboxesTests, prefix), newSandboxes)
}

var sandboxesTests = []test[SandboxFixture]{
	{"StartReachesTheSandboxesAgent", sbStart},
	{"EachSandboxHasItsOwnAgent", sbSeparate},
	{"StopReachesTheAgentAfterStart", sbStop},
	{"StopOfAnIdleSandboxIsNoError", sbStopIdle},
	{"AnAgentsRefusalIsAnError", sbRefused},
}

// contractServerToken is the agent server token the edge would pass (the adapters
// hand it on; an agent refuses a request without one).
const contractServerToken = "contract-server-token"

func startOf(exec string, attempt int) agentapi.Start {
	return agentapi.Start{ServerToken: contractServerToken, Exec: exec, Attempt: attempt, Run: "contract", EdgeURL: "http://127.0.0.1:1/",
		Blobs: agentapi.Blobs{Endpoint: "http://127.0.0.1:1/s3"}}
}

func wantSeen(t T, f SandboxFixture, sandbox string, want ...AgentRequest) {
	t.Helper()
	if got := f.Seen(sandbox); !slices.Equal(got, want) {
		t.Fatalf("agent of %s saw %+v, want %+v", sandbox, got, want)
	}
}

func sbStart(t T, f SandboxFixture) {
	sb := idOf(t)
	if err := f.Sandboxes.Start(ctx, sb, "lean", startOf("e1", 1)); err != nil {
		t.Fatalf("start: %v", err)
	}
	// A second attempt goes to the same sandbox's agent.
	if err := f.Sandboxes.Start(ctx, sb, "lean", startOf("e1", 2)); err != nil {
		t.Fatalf("second start: %v", err)
	}
	wantSeen(t, f, sb, AgentRequest{agentapi.PathStart, "e1", 1}, AgentRequest{agentapi.PathStart, "e1", 2})
}

func sbSeparate(t T, f SandboxFixture) {
	a, b := idOf(t)+"-a", idOf(t)+"-b"
	for _, sb := range []string{a, b} {
		if err := f.Sandboxes.Start(ctx, sb, "lean", startOf("exec-"+sb, 1)); err != nil {
			t.Fatalf("start %s: %v", sb, err)
		}
	}
	wantSeen(t, f, a, AgentRequest{agentapi.PathStart, "exec-" + a, 1})
	wantSeen(t, f, b, AgentRequest{agentapi.PathStart, "exec-" + b, 1})
}

func sbStop(t T, f SandboxFixture) {
	sb := idOf(t)
	if err := f.Sandboxes.Start(ctx, sb, "lean", startOf("e1", 1)); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := f.Sandboxes.Stop(ctx, sb, agentapi.Cancel{ServerToken: contractServerToken, Exec: "e1", Attempt: 1}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	wantSeen(t, f, sb, AgentRequest{agentapi.PathStart, "e1", 1}, AgentRequest{agentapi.PathCancel, "e1", 1})
}

func sbStopIdle(t T, f SandboxFixture) {
	if err := f.Sandboxes.Stop(ctx, idOf(t), agentapi.Cancel{ServerToken: contractServerToken, Exec: "e1", Attempt: 1}); err != nil {
		t.Fatalf("stop of a sandbox with no agent: %v", err)
	}
}

func sbRefused(t T, f SandboxFixture) {
	if err := f.Sandboxes.Start(ctx, idOf(t), "lean", startOf(RefuseExec, 1)); err == nil {
		t.Fatal("start refused by the agent returned no error")
	}
}
