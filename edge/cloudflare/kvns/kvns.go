//go:build js && wasm

// Package kvns is the edge's KV port over a Worker's KV namespace binding
// (CONFIG_KV, IDEMPOTENCY_KV), on the runtime's own Await.
//
// Workers KV keeps a key for at least 60 seconds: a shorter TTL is raised to 60 s
// (the edge's TTLs are a day for dedup, so nothing it relies on is shorter).
package kvns

import (
	"context"
	"fmt"
	"syscall/js"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare"
)

// Namespace is one KV binding.
type Namespace struct {
	ns      js.Value
	binding string
}

var _ edge.KV = (*Namespace)(nil)

// minTTL is Workers KV's shortest expiration.
const minTTL = 60 * time.Second

// New returns the namespace bound as binding (wrangler.jsonc kv_namespaces).
func New(binding string) (*Namespace, error) {
	ns := cloudflare.Env().Get(binding)
	if ns.Type() != js.TypeObject {
		return nil, fmt.Errorf("kv: binding %s is not configured", binding)
	}
	return &Namespace{ns: ns, binding: binding}, nil
}

// Get implements edge.KV: a missing key is found false, not an error.
func (n *Namespace) Get(ctx context.Context, key string) (string, bool, error) {
	v, err := cloudflare.Await(ctx, n.ns.Call("get", key, "text"))
	if err != nil {
		return "", false, fmt.Errorf("kv %s: get %s: %w", n.binding, key, err)
	}
	if v.IsNull() || v.IsUndefined() {
		return "", false, nil
	}
	return v.String(), true, nil
}

// Put implements edge.KV; ttl 0 keeps the key until it is overwritten.
func (n *Namespace) Put(ctx context.Context, key, value string, ttl time.Duration) error {
	opts := js.Global().Get("Object").New()
	if ttl > 0 {
		opts.Set("expirationTtl", int(max(ttl, minTTL).Seconds()))
	}
	if _, err := cloudflare.Await(ctx, n.ns.Call("put", key, value, opts)); err != nil {
		return fmt.Errorf("kv %s: put %s: %w", n.binding, key, err)
	}
	return nil
}
