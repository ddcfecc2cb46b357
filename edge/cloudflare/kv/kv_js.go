//go:build js && wasm

package kv

import (
	"context"
	"fmt"
	"math"
	"syscall/js"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare"
)

// Namespace is the edge's KV port over one Workers KV binding.
//
// Workers KV expires a key no sooner than 60 s after a write (a shorter expirationTtl
// is refused), so a TTL is kept twice: as the binding's expirationTtl, raised to 60 s,
// which frees the storage, and as the exact expiry (unix ms) in the key's metadata,
// which Get checks. A key is gone at its bound whatever the TTL.
type Namespace struct {
	ns js.Value
	// Now is the clock the metadata expiry is written and checked with (nil:
	// time.Now); the contract suite moves it to reach a bound without waiting.
	Now func() time.Time
}

var _ edge.KV = (*Namespace)(nil)

// minTTL is Workers KV's shortest expirationTtl.
const minTTL = 60 * time.Second

// New returns the namespace bound as binding (wrangler.jsonc kv_namespaces).
func New(binding string) (*Namespace, error) {
	ns := cloudflare.Env().Get(binding)
	if ns.Type() != js.TypeObject {
		return nil, fmt.Errorf("kv: binding %s is not configured", binding)
	}
	return &Namespace{ns: ns}, nil
}

func (n *Namespace) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// Get implements edge.KV: a key past its metadata expiry is absent, as is one Workers
// KV has dropped.
func (n *Namespace) Get(ctx context.Context, key string) (string, bool, error) {
	var p js.Value
	if err := cloudflare.Try(func() { p = n.ns.Call("getWithMetadata", key, "text") }); err != nil {
		return "", false, fmt.Errorf("kv get %q: %w", key, err)
	}
	r, err := cloudflare.Await(ctx, p)
	if err != nil {
		return "", false, fmt.Errorf("kv get %q: %w", key, err)
	}
	v := r.Get("value")
	if v.Type() != js.TypeString {
		return "", false, nil
	}
	if md := r.Get("metadata"); md.Type() == js.TypeObject {
		if exp := md.Get("exp"); exp.Type() == js.TypeNumber && n.now().UnixMilli() >= int64(exp.Float()) {
			return "", false, nil
		}
	}
	return v.String(), true, nil
}

// Put implements edge.KV. A write replaces the value, its expiry and its metadata
// together, so ttl 0 after a TTL leaves the key without expiry.
func (n *Namespace) Put(ctx context.Context, key, value string, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("kv put %q: negative ttl %s", key, ttl)
	}
	opts := map[string]any{}
	if ttl > 0 {
		opts["expirationTtl"] = math.Ceil(max(ttl, minTTL).Seconds())
		opts["metadata"] = map[string]any{"exp": n.now().Add(ttl).UnixMilli()}
	}
	var p js.Value
	if err := cloudflare.Try(func() { p = n.ns.Call("put", key, value, opts) }); err != nil {
		return fmt.Errorf("kv put %q: %w", key, err)
	}
	if _, err := cloudflare.Await(ctx, p); err != nil {
		return fmt.Errorf("kv put %q: %w", key, err)
	}
	return nil
}
