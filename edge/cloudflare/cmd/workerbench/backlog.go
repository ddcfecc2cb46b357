//go:build !js

package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/workertest"
	"github.com/flare-dispatch/flare-dispatch/internal/benchstat"
)

// backlogAccept is issue 15's proof under workerd: dispatch accept with 0 and with
// depth runs queued, while no run can start (the sandboxes forward to a closed port,
// as with the agent supervisor stopped, so every start fails and is retried). Each
// depth has its own fresh `wrangler dev` stack with ADMISSION_CAP=4; the backlog
// stack first gets depth signed dispatches from 8 clients and 15 s to settle.
//
// With pairs > 0 both stacks are up at once; each first takes warmup untimed
// dispatches (the backlog stack's fill has run the dispatch path thousands of times,
// so V8 has tiered its wasm up: a fresh empty stack would be timed cold), then the
// timed dispatches come in pairs of batches, one batch of batch dispatches from 8 clients on each stack, the order
// alternating per pair, so the machine's drift (minutes apart, two sequential stacks
// differed by more than the goal) falls on both depths alike; the stack not being
// timed gets nothing from the bench meanwhile, but its own work (its runs' failing
// starts and their retries) goes on, which at depth is the backlog's real cost. With
// pairs == 0 the stacks run one after the other, 300 timed each (the first form of
// this bench, kept so its earlier figures can be reproduced). Either way each stack
// then takes a burst of 500 dispatches from 50 clients at once (the issue's
// realistic burst). Goal: the timed dispatches within 1.2× of each other at p50 and
// p99, no answer but 202.
func backlogAccept(depth, pairs, batch, warmup int) error {
	if pairs < 0 || batch < 1 || warmup < 0 {
		return fmt.Errorf("-pairs %d -batch %d -warmup %d: want pairs ≥ 0, batch ≥ 1, warmup ≥ 0", pairs, batch, warmup)
	}
	root, err := builtWorker()
	if err != nil {
		return err
	}
	closed, err := workertest.ClosedPort()
	if err != nil {
		return err
	}
	if pairs == 0 {
		return backlogSequential(root, closed, depth)
	}
	return backlogInterleaved(root, closed, depth, pairs, batch, warmup)
}

// backlogStack is one `wrangler dev` of the backlog bench.
type backlogStack struct {
	name string
	w    *workertest.Worker
	c    *http.Client
	stop func()
}

// send makes one request to the stack and returns its status and body.
func (s *backlogStack) send(method, path string, body []byte, hdr map[string]string) (int, []byte, error) {
	req, err := http.NewRequest(method, s.w.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := s.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw, nil
}

// startBacklogStack starts a fresh stack whose sandboxes forward to closed; with -log
// its output goes to the log path plus "."+name. stop also removes its state.
func startBacklogStack(root, closed, name string) (*backlogStack, error) {
	dir, err := os.MkdirTemp("", "flare-workerbench-")
	if err != nil {
		return nil, err
	}
	opt := workertest.Options{PersistDir: dir, Migrate: true, AgentURL: closed,
		Vars: map[string]string{"HMAC_SECRET": benchSecret, "ADMISSION_CAP": "4"}}
	closeLog := func() {}
	if logPath != "" {
		f, err := os.Create(logPath + "." + name)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		opt.Log, closeLog = f, func() { f.Close() }
	}
	w, err := workertest.Start(context.Background(), root, opt)
	if err != nil {
		closeLog()
		os.RemoveAll(dir)
		return nil, err
	}
	return &backlogStack{name: name, w: w,
		c:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second},
		stop: func() { w.Stop(); closeLog(); os.RemoveAll(dir) }}, nil
}

// distinctDispatch is a signed offload-test dispatch (body and headers) at a commit
// of its own, derived from key, so its own sandbox; key is also its Idempotency-Key.
func distinctDispatch(key string) (body []byte, hdr map[string]string) {
	sha := fmt.Sprintf("%x", sha1.Sum([]byte(key)))
	body = []byte(`{"run":"offload-test","github":{"repo":"acme/app","sha":"` + sha + `"},` +
		`"inputs":{"repo":"acme/app","sha":"` + sha + `","command":"true"}}`)
	return body, map[string]string{"X-FlareDispatch-Signature": edge.SignatureHeader(benchSecret, body),
		"Content-Type": "application/json", "Idempotency-Key": key}
}

// dispatches sends n distinct signed dispatches (each its own commit, so its own
// sandbox) from clients senders and returns each one's latency and the answers that
// were not 202 (client errors included); the first few go to stderr.
func (s *backlogStack) dispatches(prefix string, n, clients int) ([]time.Duration, int) {
	lat, bad := benchstat.Fanout(n, clients, func(i int) error {
		body, hdr := distinctDispatch(fmt.Sprintf("%s-%d", prefix, i))
		code, raw, err := s.send(http.MethodPost, "/v1/dispatch/offload-test", body, hdr)
		if err == nil && code != http.StatusAccepted {
			err = fmt.Errorf("%d %s", code, raw)
		}
		return err
	})
	for _, err := range bad[:min(5, len(bad))] {
		fmt.Fprintln(os.Stderr, time.Now().Format(time.TimeOnly), s.name, prefix, "dispatch:", err)
	}
	return lat, len(bad)
}

// fill queues depth dispatches from 8 clients, then leaves the stack 15 s to settle.
func (s *backlogStack) fill(depth int) (took time.Duration, bad int) {
	t0 := time.Now()
	_, bad = s.dispatches("queued", depth, 8)
	took = time.Since(t0)
	time.Sleep(15 * time.Second)
	return took, bad
}

// burst500 sends the realistic burst: 500 dispatches from 50 clients at once.
func (s *backlogStack) burst500() (took time.Duration, bad int) {
	t0 := time.Now()
	_, bad = s.dispatches("burst", 500, 50)
	return time.Since(t0), bad
}

func rate(n int, d time.Duration) string {
	return fmt.Sprintf("%.1f s (%.0f/s)", d.Seconds(), float64(n)/d.Seconds())
}

// backlogInterleaved: both stacks up at once, timed batches alternating between them.
func backlogInterleaved(root, closed string, depth, pairs, batch, warmup int) error {
	started, load0 := time.Now().UTC(), benchstat.LoadAvg()
	empty, err := startBacklogStack(root, closed, "empty")
	if err != nil {
		return err
	}
	defer empty.stop()
	deep, err := startBacklogStack(root, closed, "backlog")
	if err != nil {
		return err
	}
	defer deep.stop()
	fillTook, fillBad := deep.fill(depth)
	fmt.Fprintf(os.Stderr, "%s: %d queued in %s, %d non-202; warming up, then timing %d pairs of %d\n",
		time.Now().Format(time.TimeOnly), depth, rate(depth, fillTook), fillBad, pairs, batch)
	warmBad := 0
	if warmup > 0 {
		for _, s := range []*backlogStack{empty, deep} {
			_, bad := s.dispatches("warmup", warmup, 8)
			warmBad += bad
			time.Sleep(2 * time.Second)
		}
	}

	type pair struct {
		emptyFirst   bool
		e, d         []time.Duration
		eBad, dBad   int
		loadA, loadB string
	}
	var ps []pair
	var allE, allD []time.Duration
	eBad, dBad := 0, 0
	for k := range pairs {
		p := pair{emptyFirst: k%2 == 0, loadA: benchstat.LoadAvg()}
		order := []*backlogStack{empty, deep}
		if !p.emptyFirst {
			order = []*backlogStack{deep, empty}
		}
		for j, s := range order {
			if j > 0 {
				time.Sleep(2 * time.Second) // the last batch's own aftermath, the same for both orders
			}
			lat, bad := s.dispatches(fmt.Sprintf("timed%d", k), batch, 8)
			if s == empty {
				p.e, p.eBad = lat, bad
			} else {
				p.d, p.dBad = lat, bad
			}
		}
		p.loadB = benchstat.LoadAvg()
		ps = append(ps, p)
		allE, allD, eBad, dBad = append(allE, p.e...), append(allD, p.d...), eBad+p.eBad, dBad+p.dBad
		fmt.Fprintf(os.Stderr, "%s: pair %d: %.2f× / %.2f×\n", time.Now().Format(time.TimeOnly), k+1,
			benchstat.Ratio(p.d, p.e, 50), benchstat.Ratio(p.d, p.e, 99))
		time.Sleep(2 * time.Second)
	}
	loadBurst := benchstat.LoadAvg()
	eBurst, eBurstBad := empty.burst500()
	time.Sleep(15 * time.Second)
	dBurst, dBurstBad := deep.burst500()
	ended, load1 := time.Now().UTC(), benchstat.LoadAvg()

	n := benchstat.Thousands(depth)
	fmt.Printf("\n### Dispatch accept with 0 and with %s queued runs, under workerd, interleaved\n", n)
	fmt.Printf("`go run ./edge/cloudflare/cmd/workerbench -backlog %d -pairs %d -batch %d`\n", depth, pairs, batch)
	fmt.Printf("%s–%s UTC; %s; load average %s at the start, %s before the bursts, %s at the end.\n\n",
		started.Format("2006-01-02 15:04"), ended.Format("15:04"), benchstat.Machine(), load0, loadBurst, load1)
	fmt.Printf("Two `wrangler dev` stacks up at once, `ADMISSION_CAP=4`, the sandboxes at a closed port\n"+
		"(%s: no run can start; each admitted run's start fails and is retried). The backlog\n"+
		"stack: %s dispatches from 8 clients in %s, %d non-202, then 15 s to settle. Then %d\n"+
		"untimed dispatches to each stack (warm-up), then %d pairs of %d dispatches from 8 clients,\n"+
		"one batch per stack, the order alternating per pair, 2 s between batches (the stack not\n"+
		"timed gets nothing from the bench; its own runs' retries go on). The empty stack holds\n"+
		"only the bench's own dispatches: at most %d queued at the first pair, %d at the end.\n"+
		"Percentiles are nearest-rank; a batch's p99 is its slowest of %d.\n\n",
		closed, n, rate(depth, fillTook), fillBad, warmup, pairs, batch, warmup, warmup+pairs*batch, batch)
	fmt.Printf("| pair | first | 0 queued p50 / p99 | %s queued p50 / p99 | ratio p50 / p99 | non-202 (0 / %s) | load |\n|---|---|---|---|---|---|---|\n", n, n)
	for k, p := range ps {
		first := n
		if p.emptyFirst {
			first = "0"
		}
		fmt.Printf("| %d | %s | %s / %s | %s / %s | %.2f× / %.2f× | %d / %d | %s–%s |\n", k+1, first,
			pct(p.e, 50), pct(p.e, 99), pct(p.d, 50), pct(p.d, 99),
			benchstat.Ratio(p.d, p.e, 50), benchstat.Ratio(p.d, p.e, 99), p.eBad, p.dBad, p.loadA, p.loadB)
	}
	r50, r99 := benchstat.Ratio(allD, allE, 50), benchstat.Ratio(allD, allE, 99)
	fmt.Printf("| pooled, %d each | | %s / %s | %s / %s | **%.2f× / %.2f×** | %d / %d | |\n\n", len(allE),
		pct(allE, 50), pct(allE, 99), pct(allD, 50), pct(allD, 99), r50, r99, eBad, dBad)
	fmt.Printf("| then a burst of 500 from 50 clients (0 queued first, 15 s apart) | 0 queued | %s queued |\n|---|---|---|\n", n)
	fmt.Printf("| took | %s | %s |\n| non-202 | %d | %d |\n\n", rate(500, eBurst), rate(500, dBurst), eBurstBad, dBurstBad)
	within := 0
	for _, p := range ps {
		if benchstat.Ratio(p.d, p.e, 50) <= 1.2 && benchstat.Ratio(p.d, p.e, 99) <= 1.2 {
			within++
		}
	}
	fmt.Printf("Pairs with both ratios ≤ 1.2×: %d of %d. Non-202 answers: the %s %d, warm-up %d, timed %d, bursts %d.\n",
		within, len(ps), n, fillBad, warmBad, eBad+dBad, eBurstBad+dBurstBad)
	var missed []string
	if r50 > 1.2 {
		missed = append(missed, fmt.Sprintf("pooled p50 ratio %.2f×", r50))
	}
	if r99 > 1.2 {
		missed = append(missed, fmt.Sprintf("pooled p99 ratio %.2f×", r99))
	}
	if bad := fillBad + warmBad + eBad + dBad + eBurstBad + dBurstBad; bad > 0 {
		missed = append(missed, fmt.Sprintf("%d non-202 answers", bad))
	}
	if len(missed) == 0 {
		fmt.Printf("Goal (%s queued ≤ 1.2× the empty stack at pooled p50 and p99, no 5xx): **met** in this run.\n", n)
	} else {
		fmt.Printf("Goal (%s queued ≤ 1.2× the empty stack at pooled p50 and p99, no 5xx): **missed** in this run: %s.\n", n, strings.Join(missed, ", "))
	}
	return nil
}

// backlogSequential is the bench's first form: a fresh stack per depth, one after the
// other, each timing 300 dispatches from 8 clients, then the burst.
func backlogSequential(root, closed string, depth int) error {
	type result struct {
		lat                        []time.Duration
		bad, burstBad, queueingBad int
		burst, queueing            time.Duration
	}
	measure := func(depth int) (r result, err error) {
		s, err := startBacklogStack(root, closed, fmt.Sprintf("queued%d", depth))
		if err != nil {
			return r, err
		}
		defer s.stop()
		if depth > 0 {
			r.queueing, r.queueingBad = s.fill(depth)
		}
		// The timed 300 first: a burst leaves runs to settle that would weigh on them.
		r.lat, r.bad = s.dispatches("measured", 300, 8)
		r.burst, r.burstBad = s.burst500()
		return r, nil
	}
	empty, err := measure(0)
	if err != nil {
		return err
	}
	deep, err := measure(depth)
	if err != nil {
		return err
	}
	fmt.Printf("dispatch accept under wrangler dev, ADMISSION_CAP=4, no run can start (AGENT_URL %s), the two stacks one after the other; load average %s:\n", closed, benchstat.LoadAvg())
	fmt.Printf("| queued before | %d dispatches, 8 clients | 300 timed from 8 clients p50 / p99 | then a burst of 500 from 50 clients | non-202 (queueing, timed, burst) |\n|---|---|---|---|---|\n", depth)
	for _, x := range []struct {
		n int
		r result
	}{{0, empty}, {depth, deep}} {
		queueing := "—"
		if x.n > 0 {
			queueing = rate(x.n, x.r.queueing)
		}
		fmt.Printf("| %d | %s | %s / %s | %s | %d, %d, %d |\n", x.n, queueing, pct(x.r.lat, 50), pct(x.r.lat, 99),
			rate(500, x.r.burst), x.r.queueingBad, x.r.bad, x.r.burstBad)
	}
	fmt.Printf("ratio %d queued / 0 queued: p50 %.2f×, p99 %.2f× (goal ≤ 1.2×)\n", depth,
		benchstat.Ratio(deep.lat, empty.lat, 50), benchstat.Ratio(deep.lat, empty.lat, 99))
	return nil
}
