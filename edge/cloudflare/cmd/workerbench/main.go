//go:build !js

// Command workerbench prints the Cloudflare build's figures: the bundle size from
// `wrangler deploy --dry-run`, and latencies under `wrangler dev` (offline) of the
// real edge: GET /health and a signed (replayed) dispatch served by the shared Go
// runtime, each against a plain-JavaScript route of the same Worker doing the same
// work, and a Worker → Durable Object round trip through the Go actor host.
//
//	go run ./edge/cloudflare/cmd/workerbench [-n 1000] [-c 8] [-dry-run=false]
//	go run ./edge/cloudflare/cmd/workerbench -sizes 40   # what is big in the wasm
//	go run ./edge/cloudflare/cmd/workerbench -admission 2000,20000  # one pool at depth
//	go run ./edge/cloudflare/cmd/workerbench -backlog 2000  # accept with 0 and 2,000 queued, interleaved
//	go run ./edge/cloudflare/cmd/workerbench -acceptparts 50  # what one new dispatch is made of
//	go run ./edge/cloudflare/cmd/workerbench -coldstart 5   # wrangler dev spawn → first answers
//
// It needs worker/node_modules (cd worker && npm ci).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/workertest"
	"github.com/flare-dispatch/flare-dispatch/internal/benchstat"
)

func main() {
	n := flag.Int("n", 1000, "sequential requests per measured route")
	conc := flag.Int("c", 8, "concurrent clients for the throughput figure")
	dur := flag.Duration("d", 3*time.Second, "duration of each throughput run")
	dry := flag.Bool("dry-run", true, "run wrangler deploy --dry-run for the bundle size")
	sizes := flag.Int("sizes", 0, "only print the N largest packages of the Worker's wasm (code, gzip -9 alone) and exit")
	depths := flag.String("admission", "", "only measure one pool's admission Durable Object at these queue depths (e.g. 2000,20000) and exit")
	backlog := flag.Int("backlog", 0, "only measure dispatch accept with 0 and with this many runs queued (runs cannot start) and exit")
	pairs := flag.Int("pairs", 6, "-backlog: timed pairs of batches, alternating the two stacks, both up at once (0: the two stacks one after the other, 300 timed each)")
	batch := flag.Int("batch", 50, "-backlog: dispatches per timed batch (8 clients)")
	warmup := flag.Int("warmup", 50, "-backlog with -pairs: untimed dispatches to each stack before the pairs")
	parts := flag.Int("acceptparts", 0, "only time the parts of one new dispatch (KV, D1, run object creation...) this many rounds and exit")
	cold := flag.Int("coldstart", 0, "only measure the Worker's cold start this many times and exit")
	flag.StringVar(&logPath, "log", "", "also write everything wrangler dev prints to this file")
	flag.Parse()
	// Each -flag runs one item alone; none runs the latency and throughput figures.
	var err error
	switch {
	case *backlog > 0:
		err = backlogAccept(*backlog, *pairs, *batch, *warmup)
	case *parts > 0:
		err = acceptParts(*parts)
	case *cold > 0:
		err = coldStart(*cold)
	case *depths != "":
		err = admissionAtDepth(*depths)
	case *sizes > 0:
		err = packageSizes(*sizes)
	default:
		err = run(*n, *conc, *dur, *dry)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "workerbench:", err)
		os.Exit(1)
	}
}

// logPath is -log: where wrangler dev's whole output goes besides its last 256 KiB.
var logPath string

// start runs the built Worker under wrangler dev with opt, its output also in logPath.
func start(root string, opt workertest.Options) (*workertest.Worker, func(), error) {
	closeLog := func() {}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, nil, err
		}
		opt.Log, closeLog = f, func() { f.Close() }
	}
	w, err := workertest.Start(context.Background(), root, opt)
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	return w, func() { w.Stop(); closeLog() }, nil
}

// benchSecret signs the bench's dispatches.
const benchSecret = "workerbench-hmac-secret-0123456789"

func run(n, conc int, dur time.Duration, dry bool) error {
	root, err := workertest.Root()
	if err != nil {
		return err
	}
	if dry {
		upload, gz, err := workertest.DryRun(root)
		if err != nil {
			return err
		}
		fmt.Printf("bundle (wrangler deploy --dry-run): %.0f KiB, gzip %.2f KiB (%.0f B, %.2f MiB)\n", upload, gz, gz*1024, gz/1024)
	} else if err := workertest.Build(root); err != nil {
		return err
	}
	// The sandboxes forward to an agent that accepts every start and does nothing:
	// the bench measures the edge, not runs.
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{}`)
	}))
	defer agent.Close()
	w, stop, err := start(root, workertest.Options{Migrate: true, AgentURL: agent.URL,
		Vars: map[string]string{"HMAC_SECRET": benchSecret}})
	if err != nil {
		return err
	}
	defer stop()

	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}, Timeout: 30 * time.Second}
	do := func(req func() (*http.Request, error)) error {
		r, err := req()
		if err != nil {
			return err
		}
		res, err := c.Do(r)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %s", r.Method, r.URL.Path, res.Status)
		}
		return nil
	}
	getter := func(path string) func() (*http.Request, error) {
		return func() (*http.Request, error) { return http.NewRequest(http.MethodGet, w.URL+path, nil) }
	}
	// A signed dispatch, replayed: HMAC verify, input validation, a D1 read and an
	// INSERT OR IGNORE, one round trip to the run actor's Durable Object (deduped).
	body := []byte(`{"run":"offload-test","github":{"repo":"acme/app","sha":"0123456789abcdef0123456789abcdef01234567"},` +
		`"inputs":{"repo":"acme/app","sha":"0123456789abcdef0123456789abcdef01234567","command":"true"}}`)
	signed := func(path string) func() (*http.Request, error) {
		return func() (*http.Request, error) {
			r, err := http.NewRequest(http.MethodPost, w.URL+path, bytes.NewReader(body))
			if err == nil {
				r.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader(benchSecret, body))
				r.Header.Set("Content-Type", "application/json")
			}
			return r, err
		}
	}
	edgeHealth, goHealth, jsHealth := getter("/health"), getter("/__dev/health"), getter("/__dev/js/health")
	goDispatch, jsDispatch := signed("/v1/dispatch/offload-test"), signed("/__dev/js/dispatch")

	// An actor to query: started once, then RunQuery round trips.
	start, _ := actors.Marshal(actors.RunStart{Exec: "bench", Run: "checks", Pool: "bench", Sandbox: "bench", MaxDuration: time.Hour})
	query, _ := actors.Marshal(actors.RunQuery{Exec: "bench"})
	poster := func(body []byte) func() (*http.Request, error) {
		return func() (*http.Request, error) {
			return http.NewRequest(http.MethodPost, w.URL+"/__dev/actors/run/bench", bytes.NewReader(body))
		}
	}
	if err := do(poster(start)); err != nil {
		return err
	}
	actor := poster(query)

	routes := []struct {
		name string
		f    func() (*http.Request, error)
		t    []time.Duration
	}{
		{"GET /health (the edge, Go)", edgeHealth, nil},
		{"GET /__dev/health (Go, same JSON as JS)", goHealth, nil},
		{"GET /__dev/js/health (plain JS)", jsHealth, nil},
		{"POST /v1/dispatch (signed, replayed; Go)", goDispatch, nil},
		{"POST /__dev/js/dispatch (same work, plain JS)", jsDispatch, nil},
		{"Worker → run DO → reply (Go both sides)", actor, nil},
	}
	// Warm up, then interleave the routes so drift on a shared machine hits all alike.
	for range 100 {
		for _, r := range routes {
			if err := do(r.f); err != nil {
				return err
			}
		}
	}
	for range n {
		for i := range routes {
			t0 := time.Now()
			if err := do(routes[i].f); err != nil {
				return err
			}
			routes[i].t = append(routes[i].t, time.Since(t0))
		}
	}
	fmt.Printf("\nsequential, %d requests each (client-observed, keep-alive):\n", n)
	fmt.Printf("| route | p50 | p90 | p99 |\n|---|---|---|---|\n")
	for _, r := range routes {
		fmt.Printf("| %s | %s | %s | %s |\n", r.name, pct(r.t, 50), pct(r.t, 90), pct(r.t, 99))
	}
	ratio := func(name string, a, b []time.Duration) {
		fmt.Printf("%s: p50 %.2f, p99 %.2f\n", name, benchstat.Ratio(a, b, 50), benchstat.Ratio(a, b, 99))
	}
	ratio("health Go/JS", routes[1].t, routes[2].t)
	ratio("dispatch Go/JS", routes[3].t, routes[4].t)

	fmt.Printf("\nthroughput, %d concurrent clients for %v:\n", conc, dur)
	for _, m := range []struct {
		name string
		f    func() (*http.Request, error)
	}{{"GET /health (Go)", edgeHealth}, {"GET /__dev/js/health (JS)", jsHealth},
		{"signed dispatch (Go)", goDispatch}, {"dispatch (plain JS)", jsDispatch}, {"actor RunQuery (Go DO)", actor}} {
		var count, errs atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(dur)
		for range conc {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if do(m.f) != nil {
						errs.Add(1)
					} else {
						count.Add(1)
					}
				}
			})
		}
		wg.Wait()
		fmt.Printf("  %-28s %7.0f req/s  (%d errors)\n", m.name, float64(count.Load())/dur.Seconds(), errs.Load())
	}
	return nil
}

// builtWorker is the repository root with the Worker built (build/app.wasm and the
// entry), as every bench item starts.
func builtWorker() (string, error) {
	root, err := workertest.Root()
	if err != nil {
		return "", err
	}
	return root, workertest.Build(root)
}

// pct formats the nearest-rank p-th percentile of d in milliseconds.
func pct(d []time.Duration, p float64) string {
	return fmt.Sprintf("%.2f ms", float64(benchstat.Percentile(d, p).Microseconds())/1000)
}

// packageSizes prints what each package contributes to build/app.wasm: its functions'
// code, raw and gzip -9 on its own (the data section, about a third of the binary,
// is not split by package).
func packageSizes(n int) error {
	root, err := builtWorker()
	if err != nil {
		return err
	}
	funcs, data, err := workertest.WasmFuncs(filepath.Join(root, "build", "app.wasm"))
	if err != nil {
		return err
	}
	all := workertest.PackageSizes(funcs)
	code := 0
	for _, p := range all {
		code += p.Code
	}
	fmt.Printf("build/app.wasm: %d functions, code %d B, data section %d B\n\n", len(funcs), code, data)
	fmt.Printf("| package | functions | code | gzip alone |\n|---|---|---|---|\n")
	for _, p := range all[:min(n, len(all))] {
		fmt.Printf("| %s | %d | %d | %d |\n", p.Package, p.Functions, p.Code, p.Gz)
	}
	return nil
}

// admissionAtDepth measures one pool's admission Durable Object under workerd at each
// queue depth (issue 15): it queues depth runs behind a full pool (cap 16) through the
// dev route, 8 senders at once (the rate the object absorbs a burst at, its queue-
// position answers to the run objects included), then times, one at a time, what the
// object pays per message there: a waiter's heartbeat (what every waiter sent every
// 15 s before the offer protocol), a new arrival at the tail, and a sweep (its alarm).
func admissionAtDepth(list string) (err error) {
	var depths []int
	for _, f := range strings.Split(list, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || d < 0 {
			return fmt.Errorf("-admission %q: want depths like 2000,20000", list)
		}
		depths = append(depths, d)
	}
	root, err := builtWorker()
	if err != nil {
		return err
	}
	w, stop, err := start(root, workertest.Options{Migrate: true,
		Vars: map[string]string{"HMAC_SECRET": benchSecret}})
	if err != nil {
		return err
	}
	defer stop()
	defer func() {
		if err != nil { // what workerd said helps more than the status code
			logs := w.Logs()
			fmt.Fprintln(os.Stderr, "wrangler dev's last output:\n"+logs[max(0, len(logs)-6000):])
		}
	}()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 60 * time.Second}
	send := func(pool string, m actors.Message) (time.Duration, error) {
		b, _ := actors.Marshal(m)
		t0 := time.Now()
		res, err := c.Post(w.URL+"/__dev/actors/admission/"+pool, "application/json", bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		took := time.Since(t0)
		// Admission answers runs with sends, not replies: the dev route reports that as 502.
		if res.StatusCode != http.StatusOK && !bytes.Contains(body, []byte("no reply")) {
			return took, fmt.Errorf("%s: %d %s", m.Type(), res.StatusCode, body)
		}
		return took, nil
	}
	fmt.Printf("| queued | burst absorbed (8 senders) | waiter heartbeat p50 / p99 | arrival at the tail p50 / p99 | sweep (alarm) p50 | timed messages failed |\n|---|---|---|---|---|---|\n")
	for _, depth := range append([]int{0}, depths...) {
		pool := fmt.Sprintf("bench%d", depth)
		exec := func(i int) string { return fmt.Sprintf("%s-w%06d", pool, i) }
		total := depth + 16 // the first 16 hold the pool's slots
		next := make(chan int, total)
		for i := range total {
			next <- i
		}
		close(next)
		var wg sync.WaitGroup
		var failed atomic.Int64
		t0 := time.Now()
		for range 8 {
			wg.Go(func() {
				for i := range next {
					if _, err := send(pool, actors.AdmitRequest{Exec: exec(i)}); err != nil {
						if failed.Add(1) <= 5 {
							fmt.Fprintln(os.Stderr, time.Now().Format(time.TimeOnly), "enqueue:", err)
						}
					}
				}
			})
		}
		wg.Wait()
		rate := float64(total) / time.Since(t0).Seconds()
		var beats, arrivals, sweeps []time.Duration
		// A failed message is counted and reported, not fatal: under wrangler dev a
		// stalled isolate fails the POSTs in flight (specs/cloudflare.md).
		var timedFailed int
		timed := func(into *[]time.Duration, m actors.Message) {
			d, err := send(pool, m)
			if err != nil {
				if timedFailed++; timedFailed <= 3 {
					fmt.Fprintln(os.Stderr, time.Now().Format(time.TimeOnly), m.Type()+":", err)
				}
				return
			}
			*into = append(*into, d)
		}
		for i := range 200 {
			timed(&beats, actors.AdmitHeartbeat{Exec: exec(16 + i*max(depth, 1)/200)})
			timed(&arrivals, actors.AdmitRequest{Exec: exec(total + i)})
		}
		for range 10 {
			timed(&sweeps, actors.Alarm{})
		}
		fmt.Printf("| %d | %.0f msg/s (%d failed) | %s / %s | %s / %s | %s | %d |\n", depth, rate, failed.Load(),
			pct(beats, 50), pct(beats, 99), pct(arrivals, 50), pct(arrivals, 99), pct(sweeps, 50), timedFailed)
	}
	return nil
}

// coldStart measures the Worker's cold start under workerd n times, each on a fresh
// `wrangler dev` (new persistence directory, nothing migrated): from the spawn until a
// plain-JavaScript route answers (wrangler, workerd and the isolate up: the module
// with the wasm loaded and compiled), then the first Go request (GET /health:
// instantiate the wasm, Go's init and main, the edge built), then a second one (warm).
func coldStart(n int) error {
	root, err := builtWorker()
	if err != nil {
		return err
	}
	get := func(url string) (time.Duration, error) {
		t0 := time.Now()
		res, err := http.Get(url)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %s", url, res.Status)
		}
		return time.Since(t0), nil
	}
	var isolate, first, second []time.Duration
	fmt.Printf("| run | spawn → first JS answer | first Go answer (GET /health) | second | spawn → first Go answer |\n|---|---|---|---|---|\n")
	for i := range n {
		t0 := time.Now()
		w, stop, err := start(root, workertest.Options{ReadyPath: "/__dev/js/health"})
		if err != nil {
			return err
		}
		up := time.Since(t0)
		f, err := get(w.URL + "/health")
		if err != nil {
			stop()
			return err
		}
		s, err := get(w.URL + "/health")
		stop()
		if err != nil {
			return err
		}
		isolate, first, second = append(isolate, up), append(first, f), append(second, s)
		fmt.Printf("| %d | %.2f s | %s | %s | %.2f s |\n", i+1, up.Seconds(), pct([]time.Duration{f}, 50), pct([]time.Duration{s}, 50), (up + f).Seconds())
	}
	fmt.Printf("median: spawn → JS %.2f s, first Go answer %s, second %s\n", benchstat.Percentile(isolate, 50).Seconds(), pct(first, 50), pct(second, 50))
	return nil
}
