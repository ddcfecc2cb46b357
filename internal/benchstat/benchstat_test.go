package benchstat

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	d := make([]time.Duration, len(v))
	for i, x := range v {
		d[i] = time.Duration(x) * time.Millisecond
	}
	return d
}

func TestPercentileIsNearestRank(t *testing.T) {
	// 1..100 ms shuffled: the p-th percentile is p ms exactly.
	hundred := ms()
	for i := 100; i >= 1; i-- {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		name string
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 of 1..100", hundred, 100, 100 * time.Millisecond},
		{"p1 of 1..100", hundred, 1, 1 * time.Millisecond},
		// n·p/100 = 2.5: rank ⌈2.5⌉ = 3.
		{"p50 of five", ms(5, 1, 4, 2, 3), 50, 3 * time.Millisecond},
		// n·p/100 = 2 exactly: rank 2, where the index n·p/100 (the benches' old
		// flarebench definition) picks the 3rd.
		{"p50 of four", ms(40, 10, 30, 20), 50, 20 * time.Millisecond},
		// 50 samples: p99 is rank ⌈49.5⌉ = 50, the maximum.
		{"p99 of fifty", append(ms(1, 2, 3), slices.Repeat(ms(7), 46)...), 99, 7 * time.Millisecond},
		{"p0 is the minimum", ms(9, 4, 6), 0, 4 * time.Millisecond},
		{"one sample", ms(12), 99, 12 * time.Millisecond},
		{"empty", nil, 50, 0},
	} {
		if got := Percentile(c.d, c.p); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	d := ms(3, 1, 2)
	Percentile(d, 50)
	if !slices.Equal(d, ms(3, 1, 2)) {
		t.Errorf("Percentile reordered its input: %v", d)
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(ms(30, 10, 20), ms(10, 5, 20), 50); got != 2 {
		t.Errorf("Ratio: got %v, want 2", got)
	}
	if got := Ratio(ms(1), nil, 50); got != 0 {
		t.Errorf("Ratio over nothing: got %v, want 0", got)
	}
}

func TestFanoutCallsEachOnceAndCountsErrors(t *testing.T) {
	const n, clients = 200, 8
	var calls [n]atomic.Int32
	var inFlight, most atomic.Int32
	lat, errs := Fanout(n, clients, func(i int) error {
		now := inFlight.Add(1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		defer inFlight.Add(-1)
		calls[i].Add(1)
		time.Sleep(100 * time.Microsecond) // a call that takes time, so latencies are > 0
		if i%7 == 0 {
			return errors.New("not 202")
		}
		return nil
	})
	for i := range calls {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("do(%d) called %d times, want once", i, c)
		}
	}
	if want := (n + 6) / 7; len(errs) != want { // i = 0, 7, ..., 196
		t.Errorf("errors: got %d, want %d", len(errs), want)
	}
	if len(lat) != n {
		t.Fatalf("latencies: got %d, want %d", len(lat), n)
	}
	for i, d := range lat {
		if d < 100*time.Microsecond {
			t.Fatalf("latency %d is %v, shorter than the call", i, d)
		}
	}
	if m := most.Load(); m > clients {
		t.Errorf("%d calls in flight at once, want at most %d clients", m, clients)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 2000: "2,000", 20000: "20,000", 1234567: "1,234,567"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMachineAndLoad(t *testing.T) {
	if m := Machine(); m == "" {
		t.Error("Machine is empty")
	}
	if l := LoadAvg(); l == "" {
		t.Error("LoadAvg is empty")
	}
}
