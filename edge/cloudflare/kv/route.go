// Package kv is the edge's KV port on Cloudflare: Namespace over a Workers KV binding,
// and Router, which sends each key to the store that holds it (specs/cloudflare.md,
// "KV bindings": configuration and secrets in CONFIG_KV, webhook dedup in
// IDEMPOTENCY_KV, the edge's own state in D1).
package kv

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Route sends the keys that start with Prefix to KV. Name is the binding, for errors.
// A ReadOnly route refuses writes: the operator writes CONFIG_KV (`wrangler kv key
// put`), the edge only reads it, so an edge key that has no route of its own fails
// its first write instead of landing in the configuration.
type Route struct {
	Prefix   string
	Name     string
	KV       edge.KV
	ReadOnly bool
}

// Router is one edge.KV over several stores: the first route whose prefix matches a
// key serves it, Default any other key.
type Router struct {
	Routes  []Route
	Default Route
}

var _ edge.KV = (*Router)(nil)

func (r *Router) route(key string) Route {
	for _, rt := range r.Routes {
		if strings.HasPrefix(key, rt.Prefix) {
			return rt
		}
	}
	return r.Default
}

// Get implements edge.KV.
func (r *Router) Get(ctx context.Context, key string) (string, bool, error) {
	return r.route(key).KV.Get(ctx, key)
}

// Put implements edge.KV.
func (r *Router) Put(ctx context.Context, key, value string, ttl time.Duration) error {
	rt := r.route(key)
	if rt.ReadOnly {
		return fmt.Errorf("kv put %q: %s is read-only for the edge (no route for this key)", key, rt.Name)
	}
	return rt.KV.Put(ctx, key, value, ttl)
}
