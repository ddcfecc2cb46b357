package containers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/containers"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
)

// objects fakes the sandbox classes' Durable Object stubs: one object (and agent) per
// (binding, sandbox id), as idFromName gives; a cancel to an object whose container
// is not running is answered without starting it, as the classes do.
type objects struct {
	mu   sync.Mutex
	seen map[string][]porttest.AgentRequest
}

func (o *objects) transport(binding, sandbox string) (http.RoundTripper, error) {
	key := binding + "/" + sandbox
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if got := r.Header.Get(containers.SandboxHeader); got != sandbox {
			return nil, fmt.Errorf("request to %s names sandbox %q", key, got)
		}
		o.mu.Lock()
		_, running := o.seen[key]
		o.mu.Unlock()
		rec := httptest.NewRecorder()
		if r.URL.Path == "/cancel" && !running {
			rec.WriteHeader(http.StatusOK)
			return rec.Result(), nil
		}
		porttest.FakeAgent(func(q porttest.AgentRequest) {
			o.mu.Lock()
			o.seen[key] = append(o.seen[key], q)
			o.mu.Unlock()
		}).ServeHTTP(rec, r)
		return rec.Result(), nil
	}), nil
}

// TestSandboxesContract holds the Containers adapter to the Sandboxes contract over
// faked stubs (Containers do not run here; the Worker's local proxy is exercised by
// edge/cloudflare/workertest end to end).
func TestSandboxesContract(t *testing.T) {
	porttest.Sandboxes(t, "containers-", func(t *testing.T) porttest.SandboxFixture {
		o := &objects{seen: map[string][]porttest.AgentRequest{}}
		s := &containers.Sandboxes{Transport: o.transport}
		return porttest.SandboxFixture{Sandboxes: s, Seen: func(sandbox string) []porttest.AgentRequest {
			o.mu.Lock()
			defer o.mu.Unlock()
			return o.seen[containers.BindingLean+"/"+sandbox]
		}}
	})
}
