package porttest

import (
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// KVFixture is a KV under test and a way to move its clock: expiry is checked at its
// bound without waiting for it.
type KVFixture struct {
	KV      edge.KV
	Advance func(d time.Duration)
}

// KV runs the contract; newKV is called once per subtest. Keys are unique per subtest
// under prefix, so adapters may share one store.
func KV[R Runner[R]](t R, prefix string, newKV func(t R) KVFixture) {
	run(t, withPrefix(kvTests, prefix), newKV)
}

var kvTests = []test[KVFixture]{
	{"AbsentKeyIsNotFoundWithoutError", kvAbsent},
	{"PutThenGetAndOverwrite", kvOverwrite},
	{"EmptyAndLargeValuesAndOddKeys", kvValues},
	{"TTLExpiresAtItsBound", kvTTL},
	{"OverwriteResetsTheTTL", kvTTLReset},
	{"TTLShorterThanAMinuteExpiresAtItsBound", kvShortTTL},
}

func mustPutKV(t T, kv edge.KV, k, v string, ttl time.Duration) {
	t.Helper()
	if err := kv.Put(ctx, k, v, ttl); err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
}

func wantKV(t T, kv edge.KV, k, want string, present bool) {
	t.Helper()
	v, ok, err := kv.Get(ctx, k)
	if err != nil || ok != present || v != want {
		t.Fatalf("get %s: %q %v %v; want %q %v", k, v, ok, err, want, present)
	}
}

func kvAbsent(t T, f KVFixture) { wantKV(t, f.KV, idOf(t), "", false) }

func kvOverwrite(t T, f KVFixture) {
	k := idOf(t)
	mustPutKV(t, f.KV, k, "one", 0)
	wantKV(t, f.KV, k, "one", true)
	mustPutKV(t, f.KV, k, "two", 0)
	wantKV(t, f.KV, k, "two", true)
	wantKV(t, f.KV, k+"-other", "", false)
}

func kvValues(t T, f KVFixture) {
	k := idOf(t)
	mustPutKV(t, f.KV, k+"/empty", "", 0)
	wantKV(t, f.KV, k+"/empty", "", true) // present, though empty
	big := strings.Repeat("0123456789abcdef", 4096)
	mustPutKV(t, f.KV, k+"/big", big, 0)
	wantKV(t, f.KV, k+"/big", big, true)
	for _, odd := range []string{k + "/ünïcødé ☃", k + "/with:colons/and%25", k + "/'quote\"", k + "/%_"} {
		mustPutKV(t, f.KV, odd, odd+"=v", 0)
		wantKV(t, f.KV, odd, odd+"=v", true)
	}
	wantKV(t, f.KV, k+"/__", "", false) // not a LIKE match of "%_"
}

func kvTTL(t T, f KVFixture) {
	k := idOf(t)
	mustPutKV(t, f.KV, k, "v", time.Minute)
	mustPutKV(t, f.KV, k+"-forever", "v", 0)
	f.Advance(time.Minute - time.Millisecond)
	wantKV(t, f.KV, k, "v", true)
	f.Advance(time.Millisecond)
	wantKV(t, f.KV, k, "", false)
	f.Advance(365 * 24 * time.Hour)
	wantKV(t, f.KV, k+"-forever", "v", true)
	// An expired key can be written again.
	mustPutKV(t, f.KV, k, "again", time.Minute)
	wantKV(t, f.KV, k, "again", true)
}

// kvShortTTL: Workers KV refuses an expiry under 60 s; the adapter must still honour
// a shorter one (a webhook dedup window, a one-shot state) and not fail the write.
func kvShortTTL(t T, f KVFixture) {
	k := idOf(t)
	mustPutKV(t, f.KV, k, "v", 5*time.Second)
	f.Advance(5*time.Second - time.Millisecond)
	wantKV(t, f.KV, k, "v", true)
	f.Advance(time.Millisecond)
	wantKV(t, f.KV, k, "", false)
}

func kvTTLReset(t T, f KVFixture) {
	k := idOf(t)
	mustPutKV(t, f.KV, k, "v1", time.Minute)
	mustPutKV(t, f.KV, k, "v2", 0) // no expiry any more
	f.Advance(2 * time.Minute)
	wantKV(t, f.KV, k, "v2", true)
	mustPutKV(t, f.KV, k, "v3", time.Hour)
	f.Advance(30 * time.Minute)
	mustPutKV(t, f.KV, k, "v4", time.Minute) // a shorter TTL replaces the longer
	f.Advance(time.Minute)
	wantKV(t, f.KV, k, "", false)
}

// Clock is a virtual clock for KV adapters that take one (sqlmeta.Store.Now).
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
