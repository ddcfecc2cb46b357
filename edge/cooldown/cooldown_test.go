package cooldown_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/cooldown"
)

type memKV struct {
	mu  sync.Mutex
	m   map[string]string
	ttl map[string]time.Duration
}

func (k *memKV) Get(_ context.Context, key string) (string, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	return v, ok, nil
}

func (k *memKV) Put(_ context.Context, key, v string, ttl time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key], k.ttl[key] = v, ttl
	return nil
}

// Contract §12 row 8: a second pr-review for the same PR inside 30 minutes is skipped
// with the prior id and the seconds left.
func TestSecondRunInsideTheWindowCools(t *testing.T) {
	kv := &memKV{m: map[string]string{}, ttl: map[string]time.Duration{}}
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	win := 30 * time.Minute
	d, err := cooldown.Check(ctx, kv, "pr-review", "octo/svc", "pr-7", win, "pr-review:octo_svc:aaa", t0)
	if err != nil || d.Cooling {
		t.Fatalf("first: %+v %v", d, err)
	}
	if kv.ttl["cooldown:pr-review:octo_svc:pr-7"] != win {
		t.Fatalf("ttl %v", kv.ttl)
	}
	d, _ = cooldown.Check(ctx, kv, "pr-review", "octo/svc", "pr-7", win, "pr-review:octo_svc:bbb", t0.Add(10*time.Minute+500*time.Millisecond))
	if !d.Cooling || d.Prior != "pr-review:octo_svc:aaa" || d.RetryAfterSec != 1200 {
		t.Fatalf("second: %+v", d)
	}
	// The same execution again (a redelivery) is dedup's business, not cooled.
	if d, _ := cooldown.Check(ctx, kv, "pr-review", "octo/svc", "pr-7", win, "pr-review:octo_svc:aaa", t0.Add(time.Minute)); d.Cooling {
		t.Fatal("redelivery cooled")
	}
	// Another PR has its own window.
	if d, _ := cooldown.Check(ctx, kv, "pr-review", "octo/svc", "pr-8", win, "x", t0.Add(time.Minute)); d.Cooling {
		t.Fatal("other PR cooled")
	}
	// After the window the next run arms it anew.
	d, _ = cooldown.Check(ctx, kv, "pr-review", "octo/svc", "pr-7", win, "pr-review:octo_svc:ccc", t0.Add(win))
	if d.Cooling {
		t.Fatalf("after the window: %+v", d)
	}
	d, _ = cooldown.Check(ctx, kv, "pr-review", "octo/svc", "pr-7", win, "pr-review:octo_svc:ddd", t0.Add(win+time.Second))
	if !d.Cooling || d.Prior != "pr-review:octo_svc:ccc" {
		t.Fatalf("re-armed: %+v", d)
	}
	if d, _ := cooldown.Check(ctx, nil, "pr-review", "octo/svc", "pr-7", win, "e", t0); d.Cooling {
		t.Fatal("no KV must cap nothing")
	}
}
