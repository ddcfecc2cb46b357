// Package cooldown is the rate cap on top of dedup (contract §5.6): a run that
// declares a cooldown starts at most once per window for the same repository and
// scope (pr-review: once per pull request per 30 minutes); a dispatch or webhook inside
// the window is answered with the execution that armed it.
package cooldown

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// KV is the key/value store with expiry the window lives in (IDEMPOTENCY_KV).
type KV interface {
	Get(ctx context.Context, key string) (string, bool, error)
	Put(ctx context.Context, key, value string, ttl time.Duration) error
}

// Decision is what Check decided.
type Decision struct {
	Cooling       bool   // inside the window: do not start
	Prior         string // the execution that armed the window
	RetryAfterSec int    // seconds until the window ends (≥ 1 when cooling)
}

type armed struct {
	Exec    string `json:"executionId"`
	ArmedAt int64  `json:"armedAt"` // unix ms
}

// Key is the window's key: cooldown:<run>:<owner_repo>:<scope>.
func Key(run, repo, scope string) string {
	return "cooldown:" + run + ":" + strings.ReplaceAll(repo, "/", "_") + ":" + scope
}

// Check reports whether exec falls inside the window of run/repo/scope and, when it
// does not, arms the window with it. A nil kv or a window ≤ 0 caps nothing. The same
// execution again (a redelivery) is never cooled: dedup answers it.
func Check(ctx context.Context, kv KV, run, repo, scope string, window time.Duration, exec string, now time.Time) (Decision, error) {
	if kv == nil || window <= 0 || scope == "" {
		return Decision{}, nil
	}
	key := Key(run, repo, scope)
	raw, ok, err := kv.Get(ctx, key)
	if err != nil {
		return Decision{}, err
	}
	if ok {
		var a armed
		if json.Unmarshal([]byte(raw), &a) == nil && a.Exec != "" {
			if a.Exec == exec {
				return Decision{}, nil
			}
			remaining := time.UnixMilli(a.ArmedAt).Add(window).Sub(now)
			if remaining > 0 {
				return Decision{Cooling: true, Prior: a.Exec, RetryAfterSec: max(1, int(math.Ceil(remaining.Seconds())))}, nil
			}
		}
	}
	b, _ := json.Marshal(armed{Exec: exec, ArmedAt: now.UnixMilli()})
	ttl := max(time.Minute, time.Duration(math.Ceil(window.Seconds()))*time.Second)
	return Decision{}, kv.Put(ctx, key, string(b), ttl)
}
