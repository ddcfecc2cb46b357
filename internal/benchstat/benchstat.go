// Package benchstat is what the bench commands (cmd/flarebench,
// edge/cloudflare/cmd/workerbench) share, so their figures mean the same thing: one
// percentile definition, one fan-out of timed requests, and the machine and load
// that every printed block names.
package benchstat

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Percentile is the nearest-rank p-th percentile of d: the smallest sample with at
// least p % of the samples at or below it (the ⌈n·p/100⌉-th smallest). p ≤ 0 gives
// the minimum, p ≥ 100 the maximum, an empty d 0. d is not reordered.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(float64(len(s))*p/100 - 1e-9)) // ⌈n·p/100⌉; the 1e-9 absorbs float noise
	return s[max(0, min(len(s), rank)-1)]
}

// Ratio is Percentile(x, p) / Percentile(y, p); 0 when y's is 0.
func Ratio(x, y []time.Duration, p float64) float64 {
	py := Percentile(y, p)
	if py == 0 {
		return 0
	}
	return float64(Percentile(x, p)) / float64(py)
}

// Fanout calls do(i) for every i in [0, n) from clients goroutines at once, each
// taking the next i as it finishes the last, and returns how long each call took
// (indexed by i) and the errors the calls returned, in i's order. A call's error is
// counted, not fatal: a bench reports its failures beside its latencies.
func Fanout(n, clients int, do func(i int) error) (lat []time.Duration, errs []error) {
	lat = make([]time.Duration, n)
	all := make([]error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range max(clients, 1) {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				all[i] = do(i)
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	for _, err := range all {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return lat, errs
}

// Thousands writes n with comma separators: 2,000.
func Thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// LoadAvg is the 1-minute load average (/proc/loadavg), "?" where there is none.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// Machine describes this machine: CPUs, memory, kernel, Go.
func Machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			mem = fmt.Sprintf("%.0f GiB", kb/(1<<20))
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d vCPU (%s), %s, Linux %s %s, %s", runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)), runtime.GOARCH, runtime.Version())
}
