// Package containers is the edge's Sandboxes port on Cloudflare: one Container Durable
// Object per sandbox id (idFromName), of the lean class (RUNS_SANDBOX) or the chromium
// class (RUNS_SANDBOX_BROWSER) by pool, whose default port is the agent
// (`flare agent`). Start and Stop are the agent's own POST /start and POST /cancel,
// sent through the object's stub. Under `wrangler dev` with AGENT_URL the classes are
// LocalAgentProxy, which forwards to a local supervisor (`flare agent-supervisor`) that
// runs one agent per sandbox id, named by the X-Flare-Sandbox header.
package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Binding names of the sandbox classes (wrangler.jsonc).
const (
	BindingLean    = "RUNS_SANDBOX"
	BindingBrowser = "RUNS_SANDBOX_BROWSER"
)

// SandboxHeader names the sandbox on every request to it (LocalAgentProxy and the
// supervisor route by it; a Container ignores it).
const SandboxHeader = "X-Flare-Sandbox"

// Binding is the sandbox class of a pool.
func Binding(pool string) (string, error) {
	switch pool {
	case dsl.PoolLean, "":
		return BindingLean, nil
	case dsl.PoolBrowser:
		return BindingBrowser, nil
	}
	return "", fmt.Errorf("pool %q has no sandbox class", pool)
}

// Sandboxes implements edge.Sandboxes over the sandbox classes.
type Sandboxes struct {
	// Transport returns a transport whose requests reach the agent of the sandbox
	// named sandbox in the binding (cloudflare.SandboxTransport in the Worker).
	Transport func(binding, sandbox string) (http.RoundTripper, error)
	// PoolOf returns the pool of an execution, for Stop (StopAgent does not carry it).
	PoolOf func(ctx context.Context, exec string) (string, error)
}

var _ edge.Sandboxes = (*Sandboxes)(nil)

// Start implements edge.Sandboxes. A relative blob endpoint ("/s3") is the edge's
// own: it becomes absolute against the start's EdgeURL.
func (s *Sandboxes) Start(ctx context.Context, sandbox, pool string, st agentapi.Start) error {
	binding, err := Binding(pool)
	if err != nil {
		return fmt.Errorf("start agent in %s: %w", sandbox, err)
	}
	if st.Blobs.Endpoint, err = absolute(st.EdgeURL, st.Blobs.Endpoint); err != nil {
		return fmt.Errorf("start agent in %s: %w", sandbox, err)
	}
	return s.post(ctx, binding, sandbox, agentapi.PathStart, st.ServerToken, st)
}

// Stop implements edge.Sandboxes: it asks the sandbox's agent to cancel the attempt.
// The sandbox classes answer for a container that is not running without starting it.
func (s *Sandboxes) Stop(ctx context.Context, sandbox string, c agentapi.Cancel) error {
	pool := dsl.PoolLean
	if s.PoolOf != nil {
		p, err := s.PoolOf(ctx, c.Exec)
		if err != nil {
			return fmt.Errorf("stop agent in %s: pool of %s: %w", sandbox, c.Exec, err)
		}
		pool = p
	}
	binding, err := Binding(pool)
	if err != nil {
		return fmt.Errorf("stop agent in %s: %w", sandbox, err)
	}
	return s.post(ctx, binding, sandbox, agentapi.PathCancel, c.ServerToken, c)
}

// absolute resolves a blob endpoint relative to the edge's URL.
func absolute(edgeURL, endpoint string) (string, error) {
	if !strings.HasPrefix(endpoint, "/") {
		return endpoint, nil
	}
	base, err := url.Parse(edgeURL)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return "", fmt.Errorf("blob endpoint %q is relative and the edge URL %q is not absolute", endpoint, edgeURL)
	}
	return strings.TrimRight(base.Scheme+"://"+base.Host+strings.TrimRight(base.Path, "/")+endpoint, "/"), nil
}

func (s *Sandboxes) post(ctx context.Context, binding, sandbox, path, token string, body any) error {
	rt, err := s.Transport(binding, sandbox)
	if err != nil {
		return err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	// The host is ignored: the stub decides where the request goes.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://sandbox"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SandboxHeader, sandbox)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := rt.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("POST %s to sandbox %s: %w", path, sandbox, err)
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s to sandbox %s: %d %s", path, sandbox, res.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}

// PortHeader asks a sandbox class for a port other than the agent's: the Container
// class's own switchPort header (@cloudflare/containers); LocalAgentProxy sends such
// a request to that port on the host, where local agents' commands listen.
const PortHeader = "Cf-Container-Target-Port"

var _ edge.PreviewPorts = (*Sandboxes)(nil)

// PortTransport implements edge.PreviewPorts: requests to a port of the sandbox,
// through its class's stub like the agent's own.
func (s *Sandboxes) PortTransport(sandbox, pool string, port int) (http.RoundTripper, error) {
	binding, err := Binding(pool)
	if err != nil {
		return nil, err
	}
	rt, err := s.Transport(binding, sandbox)
	if err != nil {
		return nil, err
	}
	return portTransport{rt: rt, sandbox: sandbox, port: strconv.Itoa(port)}, nil
}

type portTransport struct {
	rt            http.RoundTripper
	sandbox, port string
}

func (t portTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	out := *r // not r.Clone: it links multipart cloning into the Worker (~17 KB)
	out.Header = r.Header.Clone()
	out.Header.Set(SandboxHeader, t.sandbox)
	out.Header.Set(PortHeader, t.port)
	return t.rt.RoundTrip(&out)
}

// PoolFromMetadata is a PoolOf that reads the execution's run from the metadata
// table and the run's pool from the registry.
func PoolFromMetadata(meta edge.Metadata, runs dsl.Registry) func(ctx context.Context, exec string) (string, error) {
	return func(ctx context.Context, exec string) (string, error) {
		ex, err := meta.Execution(ctx, exec)
		if err != nil {
			return "", err
		}
		run, ok := runs[ex.Run]
		if !ok {
			return "", fmt.Errorf("execution %s: unknown run %q", exec, ex.Run)
		}
		return run.Spec().PoolName(), nil
	}
}
