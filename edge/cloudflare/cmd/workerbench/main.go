//go:build !js

// Command workerbench prints the Cloudflare build's figures: the bundle size from
// `wrangler deploy --dry-run`, and latencies under `wrangler dev` (offline): GET
// /health served by the shared Go runtime against a plain-JavaScript route of the
// same Worker doing the same work, and a Worker → Durable Object round trip through
// the Go actor host.
//
//	go run ./edge/cloudflare/cmd/workerbench [-n 1000] [-c 8] [-dry-run=false]
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
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/workertest"
)

func main() {
	n := flag.Int("n", 1000, "sequential requests per measured route")
	conc := flag.Int("c", 8, "concurrent clients for the throughput figure")
	dur := flag.Duration("d", 3*time.Second, "duration of each throughput run")
	dry := flag.Bool("dry-run", true, "run wrangler deploy --dry-run for the bundle size")
	flag.Parse()
	if err := run(*n, *conc, *dur, *dry); err != nil {
		fmt.Fprintln(os.Stderr, "workerbench:", err)
		os.Exit(1)
	}
}

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
		fmt.Printf("bundle (wrangler deploy --dry-run): %.0f KiB, gzip %.0f KiB (%.2f MiB)\n", upload, gz, gz/1024)
	} else if err := workertest.Build(root); err != nil {
		return err
	}
	w, err := workertest.Start(context.Background(), root, workertest.Options{})
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
	goHealth, jsHealth := getter("/health"), getter("/__dev/js/health")

	// An actor to query: started once (queued → leased), then RunQuery round trips.
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

	// Warm up, then interleave the routes so drift on a shared machine hits all alike.
	for range 100 {
		for _, f := range []func() (*http.Request, error){goHealth, jsHealth, actor} {
			if err := do(f); err != nil {
				return err
			}
		}
	}
	var tGo, tJS, tActor []time.Duration
	for range n {
		for _, m := range []struct {
			f   func() (*http.Request, error)
			out *[]time.Duration
		}{{goHealth, &tGo}, {jsHealth, &tJS}, {actor, &tActor}} {
			t0 := time.Now()
			if err := do(m.f); err != nil {
				return err
			}
			*m.out = append(*m.out, time.Since(t0))
		}
	}
	fmt.Printf("\nsequential, %d requests each (client-observed, keep-alive):\n", n)
	fmt.Printf("| route | p50 | p90 | p99 |\n|---|---|---|---|\n")
	row := func(name string, d []time.Duration) {
		fmt.Printf("| %s | %s | %s | %s |\n", name, pct(d, 50), pct(d, 90), pct(d, 99))
	}
	row("GET /health (Go, shared runtime)", tGo)
	row("GET /__dev/js/health (plain JS)", tJS)
	row("Worker → run DO → reply (Go both sides)", tActor)
	fmt.Printf("Go/JS ratio: p50 %.2f, p99 %.2f\n",
		float64(q(tGo, 50))/float64(q(tJS, 50)), float64(q(tGo, 99))/float64(q(tJS, 99)))

	fmt.Printf("\nthroughput, %d concurrent clients for %v:\n", conc, dur)
	for _, m := range []struct {
		name string
		f    func() (*http.Request, error)
	}{{"GET /health (Go)", goHealth}, {"GET /__dev/js/health (JS)", jsHealth}, {"actor RunQuery (Go DO)", actor}} {
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
