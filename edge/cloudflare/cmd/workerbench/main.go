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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/workertest"
)

func main() {
	n := flag.Int("n", 1000, "sequential requests per measured route")
	conc := flag.Int("c", 8, "concurrent clients for the throughput figure")
	dur := flag.Duration("d", 3*time.Second, "duration of each throughput run")
	dry := flag.Bool("dry-run", true, "run wrangler deploy --dry-run for the bundle size")
	sizes := flag.Int("sizes", 0, "only print the N largest packages of the Worker's wasm (code, gzip -9 alone) and exit")
	depths := flag.String("admission", "", "only measure one pool's admission Durable Object at these queue depths (e.g. 2000,20000) and exit")
	flag.Parse()
	if *depths != "" {
		if err := admissionAtDepth(*depths); err != nil {
			fmt.Fprintln(os.Stderr, "workerbench:", err)
			os.Exit(1)
		}
		return
	}
	if *sizes > 0 {
		if err := packageSizes(*sizes); err != nil {
			fmt.Fprintln(os.Stderr, "workerbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*n, *conc, *dur, *dry); err != nil {
		fmt.Fprintln(os.Stderr, "workerbench:", err)
		os.Exit(1)
	}
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
	w, err := workertest.Start(context.Background(), root, workertest.Options{Migrate: true, AgentURL: agent.URL,
		Vars: map[string]string{"HMAC_SECRET": benchSecret}})
	if err != nil {
		return err
	}
	defer w.Stop()

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
		fmt.Printf("%s: p50 %.2f, p99 %.2f\n", name, float64(q(a, 50))/float64(q(b, 50)), float64(q(a, 99))/float64(q(b, 99)))
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

func q(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func pct(d []time.Duration, p int) string {
	return fmt.Sprintf("%.2f ms", float64(q(d, p).Microseconds())/1000)
}

// packageSizes prints what each package contributes to build/app.wasm: its functions'
// code, raw and gzip -9 on its own (the data section, about a third of the binary,
// is not split by package).
func packageSizes(n int) error {
	root, err := workertest.Root()
	if err != nil {
		return err
	}
	if err := workertest.Build(root); err != nil {
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
	root, err := workertest.Root()
	if err != nil {
		return err
	}
	if err := workertest.Build(root); err != nil {
		return err
	}
	w, err := workertest.Start(context.Background(), root, workertest.Options{Migrate: true,
		Vars: map[string]string{"HMAC_SECRET": benchSecret}})
	if err != nil {
		return err
	}
	defer w.Stop()
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
	fmt.Printf("| queued | burst absorbed (8 senders) | waiter heartbeat p50 / p99 | arrival at the tail p50 / p99 | sweep (alarm) p50 |\n|---|---|---|---|---|\n")
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
						if failed.Add(1) == 1 {
							fmt.Fprintln(os.Stderr, "enqueue:", err)
						}
					}
				}
			})
		}
		wg.Wait()
		rate := float64(total) / time.Since(t0).Seconds()
		var beats, arrivals, sweeps []time.Duration
		for i := range 200 {
			d, err := send(pool, actors.AdmitHeartbeat{Exec: exec(16 + i*max(depth, 1)/200)})
			if err != nil {
				return err
			}
			beats = append(beats, d)
			if d, err = send(pool, actors.AdmitRequest{Exec: exec(total + i)}); err != nil {
				return err
			}
			arrivals = append(arrivals, d)
		}
		for range 10 {
			d, err := send(pool, actors.Alarm{})
			if err != nil {
				return err
			}
			sweeps = append(sweeps, d)
		}
		fmt.Printf("| %d | %.0f msg/s (%d failed) | %s / %s | %s / %s | %s |\n", depth, rate, failed.Load(),
			pct(beats, 50), pct(beats, 99), pct(arrivals, 50), pct(arrivals, 99), pct(sweeps, 50))
	}
	return nil
}
