package kinds_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
)

// BenchmarkAdmissionAtDepth measures what one pool's admission actor pays for a deep
// backlog, with the real reducers of every kind: `depth` runs wait behind a full pool
// (cap 16) for five virtual minutes while the holders' sandboxes never start (no agent
// answers, as in issue 15's wrangler dev case), so slots turn over only through the
// run actors' own limits. Every message is delivered, every transition serialised as
// a host commits it (actors.Commit), and only the admission actor's Apply + Commit is
// timed. Reported:
//
//	adm-msgs/vs   messages the admission actor received per virtual second (its load)
//	ns/adm-msg    wall time per admission message, Apply + Commit (its cost)
//	adm-cpu-%     share of one core the admission actor needs at that load
//	out-msgs/vs   messages it sent per virtual second (grants, queue positions, …)
//
//	go test -run '^$' -bench AdmissionAtDepth -benchtime 1x ./actors/kinds/
func BenchmarkAdmissionAtDepth(b *testing.B) {
	for _, depth := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			var in, out int
			var spent time.Duration
			for range b.N {
				i, o, s := simulateDepth(b, depth, 5*time.Minute)
				in, out, spent = in+i, out+o, spent+s
			}
			vsec := float64(b.N) * (5 * time.Minute).Seconds()
			b.ReportMetric(float64(in)/vsec, "adm-msgs/vs")
			b.ReportMetric(float64(out)/vsec, "out-msgs/vs")
			b.ReportMetric(float64(spent.Nanoseconds())/float64(max(in, 1)), "ns/adm-msg")
			b.ReportMetric(100*spent.Seconds()/vsec, "adm-cpu-%")
		})
	}
}

type nullSaver struct{ bytes int }

func (s *nullSaver) Save(c actors.Change) error {
	s.bytes += len(c.Header)
	for _, r := range c.Rows {
		s.bytes += len(r.Value)
	}
	return nil
}

// simulateDepth runs the scenario once and returns the admission actor's messages in
// and out during the measured window and the time it spent on them.
func simulateDepth(b *testing.B, depth int, window time.Duration) (in, out int, spent time.Duration) {
	cfg := kinds.DefaultConfig()
	factory := kinds.Factory(cfg)
	pool := actors.AdmissionAddr("lean")
	live := map[actors.Addr]actors.Actor{}
	stored := map[actors.Addr]bool{}
	saver := &nullSaver{}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var mail []actors.Send
	measuring := false
	get := func(a actors.Addr) actors.Actor {
		x := live[a]
		if x == nil {
			var err error
			if x, err = factory(a); err != nil {
				b.Fatal(err)
			}
			live[a] = x
		}
		return x
	}
	apply := func(a actors.Addr, m actors.Message) {
		x := get(a)
		t := time.Now()
		fx := x.Apply(now, m)
		if _, err := actors.Commit(x, stored[a], saver); err != nil {
			b.Fatal(err)
		}
		stored[a] = true
		if a == pool && measuring {
			spent += time.Since(t)
			in++
		}
		for _, e := range fx {
			if s, ok := e.(actors.Send); ok {
				mail = append(mail, s)
				if a == pool && measuring {
					out++
				}
			}
		}
	}
	drain := func() {
		for len(mail) > 0 {
			s := mail[0]
			mail = mail[1:]
			apply(s.To, s.Msg)
		}
	}
	runs := make([]actors.Addr, 0, depth+16)
	for i := range depth + 16 {
		exec := fmt.Sprintf("e%06d", i)
		runs = append(runs, actors.RunAddr(exec))
		apply(actors.RunAddr(exec), actors.RunStart{Exec: exec, Run: "bench", Pool: "lean",
			Sandbox: "sb-" + exec, MaxDuration: 2 * time.Hour})
		now = now.Add(time.Millisecond)
	}
	drain()
	// Fire every due alarm once a virtual second, as the hosts' timers would.
	alarmed := append(append([]actors.Addr{pool}, runs...), leaseAddrs(runs)...)
	tick := func() {
		now = now.Add(time.Second)
		for _, a := range alarmed {
			x := live[a]
			if x == nil {
				continue
			}
			if w := x.Wake(); !w.IsZero() && !w.After(now) {
				apply(a, actors.Alarm{})
			}
		}
		drain()
	}
	for range 60 { // warm up: the first keep-alives and sweeps
		tick()
	}
	measuring = true
	for range int(window / time.Second) {
		tick()
	}
	return in, out, spent
}

func leaseAddrs(runs []actors.Addr) []actors.Addr {
	out := make([]actors.Addr, len(runs))
	for i, r := range runs {
		out[i] = actors.LeaseAddr("sb-" + r.Key)
	}
	return out
}
