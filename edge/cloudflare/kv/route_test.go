package kv

import (
	"context"
	"strings"
	"testing"
	"time"
)

// mapKV is a KV without expiry: the routing is under test, not the stores.
type mapKV map[string]string

func (m mapKV) Get(_ context.Context, k string) (string, bool, error) {
	v, ok := m[k]
	return v, ok, nil
}
func (m mapKV) Put(_ context.Context, k, v string, _ time.Duration) error {
	m[k] = v
	return nil
}

func TestRouterSendsEachKeyToItsStoreAndKeepsConfigReadOnly(t *testing.T) {
	ctx := context.Background()
	state, dedup, config := mapKV{}, mapKV{}, mapKV{"ci-triage.repos": "a/b"}
	r := &Router{
		Routes: []Route{
			{Prefix: "gh-delivery:", Name: "IDEMPOTENCY_KV", KV: dedup},
			{Prefix: "check-run/", Name: "RUNS_METADATA", KV: state},
			{Prefix: "check-run", Name: "shadowed", KV: config, ReadOnly: true}, // the first match wins
		},
		Default: Route{Name: "CONFIG_KV", KV: config, ReadOnly: true},
	}
	for k, want := range map[string]mapKV{"gh-delivery:1": dedup, "check-run/e1": state} {
		if err := r.Put(ctx, k, "v", time.Minute); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		if want[k] != "v" {
			t.Errorf("%s did not land in its store", k)
		}
		if v, ok, err := r.Get(ctx, k); v != "v" || !ok || err != nil {
			t.Errorf("get %s: %q %v %v", k, v, ok, err)
		}
	}
	if v, ok, _ := r.Get(ctx, "ci-triage.repos"); v != "a/b" || !ok {
		t.Errorf("config read: %q %v", v, ok)
	}
	// Without ReadOnly this write would silently land in the configuration.
	err := r.Put(ctx, "new-edge-key:1", "v", 0)
	if err == nil || !strings.Contains(err.Error(), "new-edge-key:1") || !strings.Contains(err.Error(), "CONFIG_KV") {
		t.Fatalf("write to the read-only default: %v", err)
	}
	if _, ok := config["new-edge-key:1"]; ok {
		t.Fatal("the refused write reached CONFIG_KV")
	}
}
