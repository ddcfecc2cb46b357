//go:build !js

package workertest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/containers"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
)

// TestPortContractsInTheWorker runs the port contracts inside the Worker
// (POST /__dev/contract/{port}): sqlmeta compiled to wasm over the D1 binding of
// wrangler dev, the KV adapter (edge/cloudflare/kv) over both Workers KV namespaces,
// the edge's Actors port over the Durable Object stubs, and the
// Containers adapter through the sandbox classes' stubs, which are LocalAgentProxy
// under wrangler dev and forward to newSupervisor's fake agents. The Worker reports each
// subtest; every one must have run (the names are the suite's) and passed.
func TestPortContractsInTheWorker(t *testing.T) {
	sup := newSupervisor(t)
	w := start(t, Options{PersistDir: t.TempDir(), Migrate: true, AgentURL: sup.URL})
	for _, c := range []struct{ name, port, query string }{
		{"metadata", "metadata", ""}, {"kv", "kv", ""},
		{"kv/CONFIG_KV", "kv", "?binding=CONFIG_KV"}, {"kv/IDEMPOTENCY_KV", "kv", "?binding=IDEMPOTENCY_KV"},
		{"actors", "actors", ""}, {"sandboxes", "sandboxes", ""},
	} {
		port := c.port
		t.Run(c.name, func(t *testing.T) {
			res, err := client.Post(w.URL+"/__dev/contract/"+port+c.query, "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var results []porttest.Result
			if err := json.NewDecoder(res.Body).Decode(&results); res.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("contract %s: %d %v", port, res.StatusCode, err)
			}
			var names []string
			for _, r := range results {
				names = append(names, r.Name)
				t.Run(r.Name, func(t *testing.T) {
					for _, f := range r.Failures {
						t.Error(f)
					}
				})
			}
			slices.Sort(names)
			want := slices.Sorted(slices.Values(porttest.Cases(port)))
			if !slices.Equal(names, want) {
				t.Fatalf("the Worker ran %v\nwant %v", names, want)
			}
		})
	}
}

// newSupervisor stands in for `flare agent-supervisor`: one porttest.FakeAgent per
// sandbox (named by X-Flare-Sandbox), a cancel for a sandbox without an agent answered
// without starting one, and GET /__seen?sandbox= telling the Worker what reached it.
func newSupervisor(t *testing.T) *httptest.Server {
	var mu sync.Mutex
	seen := map[string][]porttest.AgentRequest{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/__seen" {
			mu.Lock()
			defer mu.Unlock()
			json.NewEncoder(w).Encode(seen[r.URL.Query().Get("sandbox")])
			return
		}
		sb := r.Header.Get(containers.SandboxHeader)
		mu.Lock()
		_, running := seen[sb]
		mu.Unlock()
		if r.URL.Path == agentapi.PathCancel && !running {
			w.WriteHeader(http.StatusOK)
			return
		}
		porttest.FakeAgent(func(q porttest.AgentRequest) {
			mu.Lock()
			seen[sb] = append(seen[sb], q)
			mu.Unlock()
		}).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}
