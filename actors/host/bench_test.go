package host

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
)

// The figures in specs/actors-host.md come from:
//
//	go test -run '^$' -bench . -benchtime 20000x ./actors/host/   (runs, messages)
//	go test -run '^$' -bench IdleActorMemory -benchtime 1x ./actors/host/
//	go test -run TestKillNine -v ./actors/host/

// BenchmarkRunLifecycle drives b.N runs of the real reducers from RunStart to
// success (agent: heartbeat, one step, exit), 8 pools with cap 16, 1000 sandboxes,
// every transition durable.
func BenchmarkRunLifecycle(b *testing.B) {
	cfg := kinds.DefaultConfig()
	f := newFleet(b, cfg, 1)
	h, err := Open(context.Background(), filepath.Join(b.TempDir(), "actors.db"), kinds.Factory(cfg), f, Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	f.host.Store(h)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		m := actors.RunStart{Exec: fmt.Sprintf("e%07d", i), Run: "bench", Pool: fmt.Sprintf("pool%d", i%8),
			Sandbox: fmt.Sprintf("sb%04d", i%1000), MaxDuration: time.Hour}
		if err := h.Send(actors.RunAddr(m.Exec), m); err != nil {
			b.Fatal(err)
		}
	}
	f.wait(b.N, 10*time.Minute, func(i int) string { return fmt.Sprintf("e%07d", i) })
	elapsed := time.Since(start)
	b.StopTimer()
	commits, records := h.store.commits.Load(), h.store.committed.Load()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "runs/s")
	b.ReportMetric(float64(records)/float64(b.N), "transitions/run")
	b.ReportMetric(float64(records)/elapsed.Seconds(), "transitions/s")
	b.ReportMetric(float64(records)/float64(max(commits, 1)), "transitions/tx")
	_ = h.Stop(context.Background())
	f.agents.Wait()
	for _, v := range f.violations {
		b.Error(v)
	}
}

// sink stands in for run actors so that admission and lease are measured alone: it
// counts the acknowledgements it gets and never changes.
type sink struct{ n *atomic.Int64 }

func (s sink) Apply(_ time.Time, m actors.Message) []actors.Effect {
	switch m.(type) {
	case actors.AdmitReleased, actors.LeaseReleased:
		s.n.Add(1)
	}
	return nil
}
func (sink) Wake() time.Time                      { return time.Time{} }
func (sink) Idle() bool                           { return true }
func (sink) Dirty() (bool, []string)              { return false, nil }
func (sink) Header() ([]byte, error)              { return []byte("{}"), nil }
func (sink) Row(string) ([]byte, bool, error)     { return nil, false, nil }
func (sink) Load([]byte, map[string][]byte) error { return nil }

// benchPairs sends b.N/2 acquire/release pairs from `execs` executions spread over
// `keys` actors, and reports the actor messages applied per second (each a durable
// transition; the grants and acknowledgements go to sinks).
func benchPairs(b *testing.B, keys, execs int, to func(i int) actors.Addr, acquire, release func(exec string) actors.Message) {
	var acks atomic.Int64
	real := kinds.Factory(kinds.DefaultConfig())
	factory := func(a actors.Addr) (actors.Actor, error) {
		if a.Kind == actors.KindRun {
			return sink{&acks}, nil
		}
		return real(a)
	}
	h, err := Open(context.Background(), filepath.Join(b.TempDir(), "actors.db"), factory, nil, Options{Logger: quiet, KeepIdle: true})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Stop(context.Background())
	pairs := max(b.N/2, 1)
	b.ResetTimer()
	start := time.Now()
	for i := range pairs {
		exec := fmt.Sprintf("e%04d", i%execs)
		_ = h.Send(to(i%keys), acquire(exec))
		_ = h.Send(to(i%keys), release(exec))
	}
	for acks.Load() < int64(pairs) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(2*pairs)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(h.store.committed.Load())/float64(max(h.store.commits.Load(), 1)), "transitions/tx")
}

func BenchmarkAdmissionMessages(b *testing.B) {
	for _, pools := range []int{1, 8} {
		b.Run(fmt.Sprintf("pools=%d", pools), func(b *testing.B) {
			benchPairs(b, pools, 1000, func(i int) actors.Addr { return actors.AdmissionAddr(fmt.Sprint("pool", i)) },
				func(e string) actors.Message { return actors.AdmitRequest{Exec: e} },
				func(e string) actors.Message { return actors.AdmitRelease{Exec: e} })
		})
	}
}

func BenchmarkLeaseMessages(b *testing.B) {
	// A sandbox id is shared by the few runs of one repository and commit: 16
	// executions take turns on the single sandbox (the lease keeps its state, with
	// the tickets it remembers, in one header).
	for _, sandboxes := range []int{1, 1000} {
		b.Run(fmt.Sprintf("sandboxes=%d", sandboxes), func(b *testing.B) {
			benchPairs(b, sandboxes, max(16, sandboxes), func(i int) actors.Addr { return actors.LeaseAddr(fmt.Sprint("sb", i)) },
				func(e string) actors.Message { return actors.LeaseAcquire{Exec: e} },
				func(e string) actors.Message { return actors.LeaseRelease{Exec: e} })
		})
	}
}

// BenchmarkIdleActorMemory measures the heap per idle actor, live (KeepIdle) and
// passivated: toy actors holding one row, and real run actors after success.
func BenchmarkIdleActorMemory(b *testing.B) {
	const n = 10000
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for _, keep := range []bool{true, false} {
		name := map[bool]string{true: "live", false: "passivated"}[keep]
		b.Run("toy/"+name, func(b *testing.B) {
			for range b.N {
				h := open(b, filepath.Join(b.TempDir(), "a.db"), &effects{}, Options{KeepIdle: keep})
				base, before := processes(h), heap()
				for i := range n {
					_ = h.Send(toyAddr(fmt.Sprint(i)), tPush{"x"})
				}
				for h.store.committed.Load() < n || !keep && processes(h) != base {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
				b.ReportMetric(float64(int64(heap())-int64(before))/n, "B/actor")
				b.ReportMetric(float64(processes(h)-base), "processes")
				_ = h.Stop(context.Background())
			}
		})
		b.Run("run/"+name, func(b *testing.B) {
			for range b.N {
				const runs = 2000
				cfg := kinds.DefaultConfig()
				f := newFleet(b, cfg, 1)
				h, err := Open(context.Background(), filepath.Join(b.TempDir(), "actors.db"), kinds.Factory(cfg), f, Options{Logger: quiet, KeepIdle: keep})
				if err != nil {
					b.Fatal(err)
				}
				f.host.Store(h)
				base, before := processes(h), heap()
				for i := range runs {
					m := runStart(i, 100)
					_ = h.Send(actors.RunAddr(m.Exec), m)
				}
				f.wait(runs, time.Minute, func(i int) string { return runStart(i, 100).Exec })
				f.agents.Wait()
				for !keep && processes(h) != base {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(100 * time.Millisecond)
				b.ReportMetric(float64(int64(heap())-int64(before))/runs, "B/run")
				b.ReportMetric(float64(processes(h)-base), "processes")
				_ = h.Stop(context.Background())
			}
		})
	}
}
