// Command flarebench is the local stack's benchmark suite: one command that measures
// the stack as a whole (real HTTP + HMAC dispatches, agents as `flare agent`
// processes) and prints, at the end, a block ready for BENCHMARKS.md: the machine,
// the date, the load average around each item, each figure beside its goal and the
// reference it is compared with.
//
//	go run ./cmd/flarebench                       # the suite (a few minutes)
//	go run ./cmd/flarebench -distinct 1000        # the 1,000 distinct runs (long)
//	go run ./cmd/flarebench -only backlog -repeat 3
//	go run ./cmd/flarebench -md /tmp/bench.md     # also write the block to a file
//
// Items (-only takes a comma-separated list): accept, backlog, first-step, overhead,
// logs, actor-memory, reaping, cap. The Worker's figures (bundle size, cold start,
// latency, admission at depth under workerd) come from
// `go run ./edge/cloudflare/cmd/workerbench`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/benchstat"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

var (
	only       = flag.String("only", "", "comma-separated items: accept, backlog, first-step, overhead, logs, actor-memory, reaping, cap (default all)")
	depth      = flag.Int("depth", 2000, "backlog: runs queued before the timed burst")
	repeat     = flag.Int("repeat", 2, "backlog: interleaved pairs (0 queued, then -depth queued) to measure")
	distinct   = flag.Int("distinct", 100, "reaping: dispatches on distinct commits (the issue's figure is 1000: several minutes)")
	mdPath     = flag.String("md", "", "also write the BENCHMARKS block to this file")
	profPrefix = flag.String("profile", "", "backlog: write CPU and block profiles of the timed bursts to this path prefix")
)

var items = []string{"accept", "backlog", "first-step", "overhead", "logs", "actor-memory", "reaping", "cap"}

func main() {
	flag.Parse()
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			if !slices.Contains(items, n) {
				fmt.Fprintf(os.Stderr, "-only: unknown item %q (one of %s)\n", n, strings.Join(items, ", "))
				os.Exit(2)
			}
			want[n] = true
		}
	}
	tmp, err := os.MkdirTemp("", "flarebench-")
	check(err)
	defer os.RemoveAll(tmp)
	started, load0 := time.Now().UTC(), benchstat.LoadAvg()
	bin := filepath.Join(tmp, "flare")
	build := exec.Command("go", "build", "-o", bin, "./cmd/flare")
	build.Stderr = os.Stderr
	check(build.Run())
	repo, shas := gitRepo(filepath.Join(tmp, "repo"), max(200, *distinct+10))
	b := &bench{bin: bin, tmp: tmp, repo: repo, shas: shas}
	for _, m := range []struct {
		name string
		f    func()
	}{{"accept", b.accept}, {"backlog", b.backlog}, {"first-step", b.firstStep}, {"overhead", b.overhead},
		{"logs", b.logs}, {"actor-memory", b.actorMemory}, {"reaping", b.reaping}, {"cap", b.capFIFO}} {
		if len(want) == 0 || want[m.name] {
			b.load = benchstat.LoadAvg()
			m.f()
		}
	}
	md := b.markdown(started, load0, benchstat.LoadAvg())
	fmt.Print("\n" + md)
	if *mdPath != "" {
		check(os.WriteFile(*mdPath, []byte(md), 0o644))
	}
}

type bench struct {
	bin, tmp, repo string
	shas           []string
	n              int
	load           string // 1-minute load average when the current item began
	rows           []row
}

// row is one line of the BENCHMARKS table.
type row struct{ what, figure, goal, reference, load, command string }

// add records a figure and prints it at once (the table comes at the end).
func (b *bench) add(r row) {
	r.load = b.load + "–" + benchstat.LoadAvg()
	b.rows = append(b.rows, r)
	fmt.Printf("%s: %s (goal: %s; reference: %s; load %s)\n", r.what, r.figure, r.goal, r.reference, r.load)
}

func (b *bench) markdown(started time.Time, load0, load1 string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "### The local stack, one command (`go run ./cmd/flarebench %s`)\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(&s, "%s UTC, %s; load average %s at the start, %s at the end.\n\n",
		started.Format("2006-01-02 15:04"), benchstat.Machine(), load0, load1)
	s.WriteString("| what | figure | goal | reference | load (1 min) | command |\n|---|---|---|---|---|---|\n")
	for _, r := range b.rows {
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | `%s` |\n", r.what, r.figure, r.goal, r.reference, r.load, r.command)
	}
	s.WriteString("\nThe Worker's figures (bundle size, cold start, latency, admission at depth under workerd): " +
		"`go run ./edge/cloudflare/cmd/workerbench`.\n")
	return s.String()
}

func (b *bench) stack(vars map[string]string, opts ...func(*local.Options)) *local.Stack {
	b.n++
	o := local.Options{DataDir: filepath.Join(b.tmp, fmt.Sprint("data", b.n)), Addr: "127.0.0.1:0",
		Getenv: func(k string) string { return vars[k] }, AgentCommand: []string{b.bin, "agent"}, Runs: runs.Registry()}
	for _, f := range opts {
		f(&o)
	}
	st, err := local.Open(context.Background(), o)
	check(err)
	return st
}

// dispatch posts a signed offload-test and returns the execution id.
func dispatch(st *local.Stack, key, sha, command string, env map[string]string) (string, time.Duration) {
	status, raw, took := post(st, key, sha, command, env)
	if status != http.StatusAccepted {
		panic(fmt.Sprintf("dispatch: %d %s", status, raw))
	}
	var out struct{ ExecutionID string }
	check(json.Unmarshal(raw, &out))
	return out.ExecutionID, took
}

// post posts a signed offload-test and returns the answer and how long it took.
func post(st *local.Stack, key, sha, command string, env map[string]string) (int, []byte, time.Duration) {
	body, _ := json.Marshal(map[string]any{"run": "offload-test", "github": map[string]any{"repo": "local/bench", "sha": sha},
		"inputs": map[string]any{"repo": repoPath, "sha": sha, "command": command, "env": env}})
	req, _ := http.NewRequest(http.MethodPost, st.URL+"/v1/dispatch/offload-test", bytes.NewReader(body))
	req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader(st.Secrets.HMACSecret, body))
	req.Header.Set("Idempotency-Key", key)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	check(err)
	took := time.Since(t0)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, raw, took
}

// burst posts n dispatches from clients goroutines (commit i picks the sha) and
// returns each one's latency and the answers that were not 202.
func burst(st *local.Stack, n, clients int, prefix string, sha func(i int) string, command string) ([]time.Duration, int) {
	lat, bad := benchstat.Fanout(n, clients, func(i int) error {
		if status, raw, _ := post(st, fmt.Sprintf("%s-%d", prefix, i), sha(i), command, nil); status != http.StatusAccepted {
			return fmt.Errorf("%d %s", status, raw)
		}
		return nil
	})
	for _, err := range bad {
		fmt.Fprintln(os.Stderr, "dispatch:", err)
	}
	return lat, len(bad)
}

// backlog: dispatch accept with 0 and with -depth runs already queued (issue 15:
// accept must not depend on the backlog; goal ≤ 1.2× apart, no 5xx). On each fresh
// stack ADMISSION_CAP=4 is held by four runs that sleep, then (backlog stacks only)
// -depth runs are queued behind them and left 15 s to settle (their queue positions
// reported, the pool swept), then 300 dispatches from 8 clients are timed. The two
// depths alternate -repeat times, so the machine's load drifts across both alike.
func (b *bench) backlog() {
	measure := func(depth, pair int) (lat []time.Duration, errs int) {
		st := b.stack(map[string]string{"ADMISSION_CAP": "4"})
		defer st.Close(context.Background())
		for i := range 4 {
			id, _ := dispatch(st, fmt.Sprintf("hold-%d", i), b.shas[20+i], "sleep 600", nil)
			for get(st, id).Execution.Status != string(actors.StatusRunning) {
				time.Sleep(20 * time.Millisecond)
			}
		}
		sha := func(i int) string { return b.shas[30+i%100] }
		if depth > 0 {
			_, errs = burst(st, depth, 8, "queued", sha, "true")
			time.Sleep(15 * time.Second)
		}
		// What accept shares with the backlog: the metadata database's one writer.
		db := st.Meta.DB
		q := func(sql string) (n int64) { check(db.QueryRow(sql).Scan(&n)); return }
		pendingQ := `SELECT count(*) FROM executions e WHERE NOT EXISTS (SELECT 1 FROM kv WHERE key = 'check-run/' || e.id)`
		p0, c0, s0 := q(pendingQ), q(`SELECT total_changes()`), db.Stats()
		stopProf := profile(fmt.Sprintf("backlog-%d-%d", depth, pair))
		lat, e := burst(st, 300, 8, "measured", sha, "true")
		stopProf()
		p1, c1, s1 := q(pendingQ), q(`SELECT total_changes()`), db.Stats()
		fmt.Printf("  %d queued: p50 %s p99 %s; projections pending %d before the burst, %d after; meta.db rows written %.1f per accept; writer waits %.1f per accept, %s per accept\n",
			depth, pct(lat, 50), pct(lat, 99), p0, p1, float64(c1-c0)/300, float64(s1.WaitCount-s0.WaitCount)/300,
			((s1.WaitDuration - s0.WaitDuration) / 300).Round(time.Microsecond))
		return lat, errs + e
	}
	var empty, deep []time.Duration
	var ratios []string
	errs := 0
	for pair := range max(*repeat, 1) {
		e, n0 := measure(0, pair)
		d, n1 := measure(*depth, pair)
		empty, deep, errs = append(empty, e...), append(deep, d...), errs+n0+n1
		ratios = append(ratios, fmt.Sprintf("%.2f×/%.2f×", ratio(d, e, 50), ratio(d, e, 99)))
	}
	b.add(row{what: fmt.Sprintf("dispatch accept, %s queued vs 0 (ADMISSION_CAP=4 held; 300 dispatches from 8 clients; %d interleaved pairs)", benchstat.Thousands(*depth), max(*repeat, 1)),
		figure: fmt.Sprintf("0 queued p50 %s p99 %s; %s queued p50 %s p99 %s: **%.2f× p50, %.2f× p99** (pairs, p50/p99: %s); non-202: %d",
			ms(pct(empty, 50)), ms(pct(empty, 99)), benchstat.Thousands(*depth), ms(pct(deep, 50)), ms(pct(deep, 99)), ratio(deep, empty, 50), ratio(deep, empty, 99), strings.Join(ratios, ", "), errs),
		goal: "≤ 1.2× apart, no 5xx", reference: "the same burst with 0 queued", command: "go run ./cmd/flarebench -only backlog"})
}

var repoPath string

type view struct {
	Execution edge.Execution `json:"execution"`
	Steps     []edge.StepRow `json:"steps"`
	Logs      []struct {
		File string `json:"file"`
		Size int64  `json:"size"`
	} `json:"logs"`
}

func get(st *local.Stack, id string) view {
	tok := edge.LogToken(edge.Config{HMACSecret: st.Secrets.HMACSecret}, id)
	resp, err := http.Get(st.URL + "/v1/executions/" + id + "?t=" + tok)
	check(err)
	defer resp.Body.Close()
	var v view
	check(json.NewDecoder(resp.Body).Decode(&v))
	return v
}

// countFailed waits for each execution to end and counts those that did not succeed.
func countFailed(st *local.Stack, ids []string) int {
	failed := 0
	for _, id := range ids {
		if wait(st, id).Execution.Status != "success" {
			failed++
		}
	}
	return failed
}

func wait(st *local.Stack, id string) view {
	for {
		v := get(st, id)
		if actors.Status(v.Execution.Status).Terminal() {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// accept: 500 dispatches from 16 clients; latency of the 202 and throughput.
func (b *bench) accept() {
	st := b.stack(map[string]string{"ADMISSION_CAP": "4"})
	defer st.Close(context.Background())
	const n, clients = 500, 16
	t0 := time.Now()
	// The same commit for all: one sandbox, so the runs queue behind its lease and
	// the figure is the edge's, not the agents'.
	lat, errs := burst(st, n, clients, "accept", func(int) string { return b.shas[0] }, "true")
	total := time.Since(t0)
	b.add(row{what: "dispatch accept, empty queue: 500 signed dispatches from 16 clients",
		figure:    fmt.Sprintf("p50 **%s**, p99 %s, %.0f/s; non-202: %d", ms(pct(lat, 50)), ms(pct(lat, 99)), float64(n)/total.Seconds(), errs),
		goal:      "— (the backlog's ratio is the goal)",
		reference: "quiet machine, Dec 2026: p50 7.3 ms, p99 32.8 ms, 1,773/s", command: "go run ./cmd/flarebench -only accept"})
}

// firstStep: dispatch → the first step's start as the steps table records it.
func (b *bench) firstStep() {
	st := b.stack(nil)
	defer st.Close(context.Background())
	measure := func(key, label string, sha func(i int) string) {
		var lat []time.Duration
		for i := range 15 {
			t0 := time.Now()
			id, _ := dispatch(st, fmt.Sprintf("first-%s-%d", key, i), sha(i), "true", nil)
			for {
				v := get(st, id)
				if len(v.Steps) > 0 {
					lat = append(lat, v.Steps[0].StartedAt.Sub(t0))
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			wait(st, id)
		}
		b.add(row{what: "dispatch → first step started, " + label, figure: fmt.Sprintf("p50 **%s**, p99 %s (15 runs)", ms(pct(lat, 50)), ms(pct(lat, 99))),
			goal: "≤ 100 ms p50", reference: "before issue 9 (agents kept running), quiet: warm 3.7 ms, cold 10.4 ms p50", command: "go run ./cmd/flarebench -only first-step"})
	}
	// Since issue 9 a run's end stops its agent and removes its workspace, so the same
	// commit again no longer finds its agent running: both start one.
	measure("warm", "same commit as the run before", func(int) string { return b.shas[1] })
	measure("cold", "a new commit each time", func(i int) string { return b.shas[10+i] })
}

// overhead: offload-test of a real test suite against the same command run bare. The
// agents run without isolation: the command works in this checkout with the host's warm
// Go caches (inside bubblewrap neither is visible, and every sandbox would compile
// cold: that cost is the fresh-sandbox benchmark's, and bubblewrap's own is
// BenchmarkIsolationCost's).
func (b *bench) overhead() {
	st := b.stack(nil, func(o *local.Options) { o.NoIsolation = true })
	defer st.Close(context.Background())
	wd, _ := os.Getwd()
	goEnv := func(k string) string {
		out, _ := exec.Command("go", "env", k).Output()
		return strings.TrimSpace(string(out))
	}
	// The same warm Go caches in both, as a restored cache would give the sandbox.
	env := map[string]string{"GOCACHE": goEnv("GOCACHE"), "GOMODCACHE": goEnv("GOMODCACHE"), "GOFLAGS": "-mod=mod"}
	cmd := "cd " + wd + " && go test -count=1 ./actors/kinds/ ./edge/local/cron/"
	bare := func() time.Duration {
		c := exec.Command("sh", "-c", cmd)
		c.Env = append(os.Environ(), "GOCACHE="+env["GOCACHE"], "GOMODCACHE="+env["GOMODCACHE"])
		t0 := time.Now()
		out, err := c.CombinedOutput()
		if err != nil {
			panic(fmt.Sprintf("bare: %v\n%s", err, out))
		}
		return time.Since(t0)
	}
	bare() // warm the caches
	var bares, offs []time.Duration
	for i := range 5 {
		bares = append(bares, bare())
		t0 := time.Now()
		id, _ := dispatch(st, fmt.Sprintf("overhead-%d", i), b.shas[2], cmd, env)
		v := wait(st, id)
		if v.Execution.Status != "success" {
			panic("offload-test failed: " + v.Execution.Status)
		}
		offs = append(offs, time.Since(t0))
	}
	mb, mo := pct(bares, 50), pct(offs, 50)
	b.add(row{what: "offload-test overhead: `go test -count=1 ./actors/kinds/ ./edge/local/cron/`, 5 each interleaved, medians, warm Go caches in `env`, agents without isolation",
		figure: fmt.Sprintf("bare %s, offload-test %s: **%+d ms (%.1f %%)**", mb.Round(time.Millisecond), mo.Round(time.Millisecond), (mo - mb).Milliseconds(), 100*float64(mo-mb)/float64(mb)),
		goal:   "≤ 5 % + 300 ms", reference: "the same command run bare", command: "go run ./cmd/flarebench -only overhead"})

	// The fixed cost alone, where it goes: the same stack running `true`, which a
	// seven-second suite's noise on a shared machine would hide.
	var total, start, co, gap, ex, tail []time.Duration
	for i := range 10 {
		t0 := time.Now()
		id, _ := dispatch(st, fmt.Sprintf("overhead-true-%d", i), b.shas[2], "true", nil)
		v := wait(st, id)
		if v.Execution.Status != "success" || len(v.Steps) != 2 {
			panic(fmt.Sprintf("offload-test of true: %s, %d steps", v.Execution.Status, len(v.Steps)))
		}
		c, e := v.Steps[0], v.Steps[1]
		total, start = append(total, v.Execution.CompletedAt.Sub(t0)), append(start, c.StartedAt.Sub(t0))
		co, gap = append(co, c.CompletedAt.Sub(c.StartedAt)), append(gap, e.StartedAt.Sub(c.CompletedAt))
		ex, tail = append(ex, e.CompletedAt.Sub(e.StartedAt)), append(tail, v.Execution.CompletedAt.Sub(e.CompletedAt))
	}
	b.add(row{what: "a run's fixed cost: offload-test of `true`, 10 runs, medians, agents without isolation",
		figure: fmt.Sprintf("dispatch → completed **%s**: checkout step starts at +%s and takes %s, %s to the command's step, which takes %s, %s to completed",
			ms(pct(total, 50)), ms(pct(start, 50)), ms(pct(co, 50)), ms(pct(gap, 50)), ms(pct(ex, 50)), ms(pct(tail, 50))),
		goal: "— (the overhead row's goal)", reference: "issue 15, before: 1,082 ms at load 14 (checkout 654 ms)", command: "go run ./cmd/flarebench -only overhead"})
}

// logs: log shipping throughput (a command's output reaching the blob store) and the
// live-tail delay (a line printed in the sandbox reaching a follower of the log route's
// events stream).
func (b *bench) logs() {
	st := b.stack(map[string]string{"LOG_QUOTA_MB": "1024"})
	defer st.Close(context.Background())

	// Throughput: 32 MiB of 128-byte lines. The shipper gathers up to 1 MiB behind the
	// segment it is storing and then blocks the command's writes, so the command runs
	// as fast as its output is stored; the run ends after its last segment is stored.
	const size = 32 << 20
	cmd := fmt.Sprintf("yes %s | head -c %d", strings.Repeat("x", 127), size)
	c := exec.Command("sh", "-c", cmd)
	t0 := time.Now()
	check(c.Run()) // to no reader: the command's own cost
	bareTook := time.Since(t0)
	var rates []float64
	var stored int64
	for i := range 3 {
		id, _ := dispatch(st, fmt.Sprintf("logs-%d", i), b.shas[3+i], cmd, nil)
		v := wait(st, id)
		end := time.Now()
		if v.Execution.Status != "success" || len(v.Steps) == 0 {
			panic("log shipping run: " + v.Execution.Status)
		}
		// The command is the last step to start; its start is when output begins.
		start := v.Steps[0].StartedAt
		for _, s := range v.Steps {
			if s.StartedAt.After(start) {
				start = s.StartedAt
			}
		}
		stored = 0
		for _, f := range v.Logs {
			stored += f.Size
		}
		rates = append(rates, float64(size)/end.Sub(start).Seconds())
	}
	slices.Sort(rates)
	b.add(row{what: "log shipping: 32 MiB of output (128-byte lines) from the command's start until stored in the blob store, 3 runs",
		figure: fmt.Sprintf("**%.1f MB/s** median (%.1f–%.1f); %.1f MB stored as NDJSON per run", rates[1]/1e6, rates[0]/1e6, rates[2]/1e6, float64(stored)/1e6),
		goal:   "— (none in the issue)", reference: fmt.Sprintf("the command to no reader: %.0f MB/s", size/bareTook.Seconds()/1e6),
		command: "go run ./cmd/flarebench -only logs"})

	// Live tail: a line every 250 ms carries the time it was printed; a follower of
	// /logs/{id} (text/event-stream) notes when each arrives.
	id, _ := dispatch(st, "tail", b.shas[7], `for i in $(seq 1 24); do echo "tick $(date +%s%N)"; sleep 0.25; done`, nil)
	delays := follow(st, id)
	if len(delays) == 0 {
		panic("live tail: no line reached the follower")
	}
	b.add(row{what: "live tail: a line printed in the sandbox → a follower of the log route's event stream (`/logs/{id}`, SSE), 24 lines 250 ms apart",
		figure: fmt.Sprintf("p50 **%s**, max %s (%d lines)", ms(pct(delays, 50)), ms(slices.Max(delays)), len(delays)),
		goal:   "— (by design ≤ 2 s: the shipper flushes every 1 s, the stream looks every 1 s)", reference: "FlushEvery + viewerTick = 2 s",
		command: "go run ./cmd/flarebench -only logs"})
}

// follow reads the events stream of an execution's log until its end and returns,
// for each "tick <unix ns>" line, how long after printing it arrived.
func follow(st *local.Stack, id string) []time.Duration {
	tok := edge.LogToken(edge.Config{HMACSecret: st.Secrets.HMACSecret}, id)
	req, _ := http.NewRequest(http.MethodGet, st.URL+"/logs/"+id+"?t="+tok, nil)
	req.Header.Set("Accept", "text/event-stream")
	var delays []time.Duration
	for {
		resp, err := http.DefaultClient.Do(req)
		check(err)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		event, ended := "", false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
				ended = ended || event == "end"
			case strings.HasPrefix(line, "id: "):
				req.Header.Set("Last-Event-ID", strings.TrimPrefix(line, "id: "))
			case strings.HasPrefix(line, "data: ") && event == "line":
				var l struct {
					T string `json:"t"`
				}
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &l) == nil {
					if ns, ok := strings.CutPrefix(strings.TrimSpace(l.T), "tick "); ok {
						if n, err := strconv.ParseInt(ns, 10, 64); err == nil {
							delays = append(delays, time.Since(time.Unix(0, n)))
						}
					}
				}
			}
		}
		resp.Body.Close()
		if ended {
			return delays
		}
	}
}

// actorMemory runs the actor host's idle-memory benchmark (actors/host) and reports
// its figures: the heap per idle run actor, live and passivated.
func (b *bench) actorMemory() {
	args := []string{"test", "-run", "^$", "-bench", "IdleActorMemory/run", "-benchtime", "1x", "./actors/host/"}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		panic(fmt.Sprintf("go %s: %v\n%s", strings.Join(args, " "), err, out))
	}
	figs := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for _, name := range []string{"run/live", "run/passivated"} {
			if len(f) > 3 && strings.Contains(f[0], name) {
				for j := 2; j+1 < len(f); j += 2 {
					if f[j+1] == "B/run" {
						figs[name] = f[j]
					}
				}
			}
		}
	}
	b.add(row{what: "memory per idle actor: 2,000 run actors after success, heap per run", figure: fmt.Sprintf("live **%s B**, passivated **%s B**", figs["run/live"], figs["run/passivated"]),
		goal: "— (none in the issue)", reference: "Dec 2026: 4.2–4.4 KB live, ~0.3 KB passivated",
		command: "go test -run '^$' -bench IdleActorMemory/run -benchtime 1x ./actors/host/"})
}

// reaping: agents, open fds and RSS of the stack (this process, which embeds it, and
// every process under it) after dispatches on distinct commits, each its own sandbox
// and so its own `flare agent` process: after 10, and after -distinct. The run's end
// stops its agent (issue 9); before that, ~1,000 dispatches left 399 agents and 5.9 GB.
func (b *bench) reaping() {
	type after struct {
		n, agents, peak, procs, fds int
		rss                         int64
		took                        time.Duration
		failed                      int
	}
	measure := func(n int, first int) after {
		st := b.stack(nil)
		defer st.Close(context.Background())
		peak, stop := 0, make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
					peak = max(peak, countAgents(b.bin))
				}
			}
		})
		t0 := time.Now()
		ids := make([]string, n)
		var wg sync.WaitGroup
		next := make(chan int, n)
		for i := range n {
			next <- i
		}
		close(next)
		for range 8 {
			wg.Go(func() {
				for i := range next {
					ids[i], _ = dispatch(st, fmt.Sprintf("distinct-%d", i), b.shas[first+i], "true", nil)
				}
			})
		}
		wg.Wait()
		failed := countFailed(st, ids)
		took := time.Since(t0)
		// A run's end stops its agent through the effect queue: give it a moment.
		for deadline := time.Now().Add(15 * time.Second); countAgents(b.bin) > 0 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
		close(stop)
		sampler.Wait()
		runtime.GC()
		procs, fds, rss := processTree()
		return after{n: n, agents: countAgents(b.bin), peak: peak, procs: procs, fds: fds, rss: rss, took: took, failed: failed}
	}
	small := measure(10, 0)
	big := measure(*distinct, 10)
	for _, a := range []after{small, big} {
		ref := fmt.Sprintf("after 10: %d agents, %d fds, %.0f MB; before issue 9: 399 agents, 5.9 GB after ~1,000", small.agents, small.fds, float64(small.rss)/1e6)
		if a.n == small.n {
			ref = "the baseline of the next row"
		}
		b.add(row{what: fmt.Sprintf("the stack after %s dispatches on distinct commits (each a new sandbox and `flare agent`), default cap 16", benchstat.Thousands(a.n)),
			figure: fmt.Sprintf("**%d agents** left (peak %d while running); %d processes, **%d open fds**, **%.0f MB RSS** (this process + its children); %d failed; all done in %s",
				a.agents, a.peak, a.procs, a.fds, float64(a.rss)/1e6, a.failed, a.took.Round(100*time.Millisecond)),
			goal: "agents reaped: 0 left; fds and RSS flat in the number of runs", reference: ref,
			command: fmt.Sprintf("go run ./cmd/flarebench -only reaping -distinct %d", *distinct)})
	}
}

// countAgents counts the running `<bin> agent` processes (directly, or under bwrap).
func countAgents(bin string) int {
	n := 0
	for _, p := range procs() {
		if i := slices.Index(p.args, bin); i >= 0 && i+1 < len(p.args) && p.args[i+1] == "agent" && !strings.Contains(p.args[0], "bwrap") {
			n++
		}
	}
	return n
}

type proc struct {
	pid, ppid int
	args      []string
}

func procs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		ppid := 0
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
				ppid, _ = strconv.Atoi(f[1])
			}
		}
		out = append(out, proc{pid: pid, ppid: ppid, args: strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")})
	}
	return out
}

// processTree counts this process and its descendants, their open fds and RSS.
func processTree() (n, fds int, rss int64) {
	all := procs()
	in := map[int]bool{os.Getpid(): true}
	for changed := true; changed; {
		changed = false
		for _, p := range all {
			if in[p.ppid] && !in[p.pid] {
				in[p.pid], changed = true, true
			}
		}
	}
	for pid := range in {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		fds += len(ents)
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				rss += kb << 10
			}
		}
	}
	return len(in), fds, rss
}

// capFIFO: 200 concurrent dispatches with ADMISSION_CAP=4, counted inside the sandboxes
// with a flock counter in a directory they share, so without isolation (bubblewrap
// gives each sandbox its own /tmp).
func (b *bench) capFIFO() {
	st := b.stack(map[string]string{"ADMISSION_CAP": "4"}, func(o *local.Options) { o.NoIsolation = true })
	defer st.Close(context.Background())
	dir := filepath.Join(b.tmp, "cap")
	check(os.MkdirAll(dir, 0o755))
	cmd := fmt.Sprintf(`( flock 9; n=$(cat %[1]s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/n; echo $n >> %[1]s/seen; echo $IDX >> %[1]s/order ) 9>%[1]s/lock; sleep 0.05; ( flock 9; n=$(cat %[1]s/n); echo $((n-1)) > %[1]s/n ) 9>%[1]s/lock`, dir)
	// Four waves of 50 concurrent dispatches, 300 ms apart: inside a wave the arrival
	// order is a race, across waves it is not, so FIFO means no run starts before a
	// run of an earlier wave that is still waiting.
	const n, wave = 200, 50
	ids := make([]string, n)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		if i > 0 && i%wave == 0 {
			time.Sleep(300 * time.Millisecond)
		}
		wg.Go(func() {
			ids[i], _ = dispatch(st, fmt.Sprintf("cap-%03d", i), b.shas[i%len(b.shas)], cmd, map[string]string{"IDX": strconv.Itoa(i)})
		})
	}
	wg.Wait()
	failed := countFailed(st, ids)
	took := time.Since(t0)
	seen, _ := os.ReadFile(filepath.Join(dir, "seen"))
	peak := 0
	for _, f := range strings.Fields(string(seen)) {
		v, _ := strconv.Atoi(f)
		peak = max(peak, v)
	}
	order, _ := os.ReadFile(filepath.Join(dir, "order"))
	inversions, latest := 0, 0
	for _, f := range strings.Fields(string(order)) {
		idx, _ := strconv.Atoi(f)
		if w := idx / wave; w < latest {
			inversions++ // started after a run of a later wave had started
		} else {
			latest = w
		}
	}
	b.add(row{what: "200 concurrent dispatches (4 waves of 50, 300 ms apart), ADMISSION_CAP=4, counted inside the sandboxes (agents without isolation)",
		figure: fmt.Sprintf("%d ran, %d failed, **peak %d at once**, %s wall; %d run(s) started after a later wave's", len(strings.Fields(string(seen))), failed, peak, took.Round(100*time.Millisecond), inversions),
		goal:   "never > 4, all complete, FIFO across waves", reference: "—", command: "go run ./cmd/flarebench -only cap"})
}

// profile starts a CPU and a block profile when -profile is set; the returned func stops them.
func profile(name string) func() {
	if *profPrefix == "" {
		return func() {}
	}
	f, err := os.Create(*profPrefix + name + ".cpu")
	check(err)
	check(pprof.StartCPUProfile(f))
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		bf, err := os.Create(*profPrefix + name + ".block")
		check(err)
		check(pprof.Lookup("block").WriteTo(bf, 0))
		bf.Close()
		runtime.SetBlockProfileRate(0)
	}
}

func pct(d []time.Duration, p int) time.Duration {
	return benchstat.Percentile(d, float64(p)).Round(10 * time.Microsecond)
}

func ratio(x, y []time.Duration, p int) float64 { return float64(pct(x, p)) / float64(pct(y, p)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// gitRepo makes a repository of n commits (git fast-import: a thousand commits in well
// under a second) and returns its path and the commits in order.
func gitRepo(dir string, n int) (string, []string) {
	check(os.MkdirAll(dir, 0o755))
	git := func(stdin io.Reader, args ...string) string {
		c := exec.Command("git", args...)
		c.Dir, c.Stdin = dir, stdin
		out, err := c.CombinedOutput()
		if err != nil {
			panic(fmt.Sprintf("git %v: %v %s", args, err, out))
		}
		return strings.TrimSpace(string(out))
	}
	git(nil, "init", "-q", "-b", "main")
	var s strings.Builder
	for i := range n {
		content, msg := strconv.Itoa(i), strconv.Itoa(i)
		fmt.Fprintf(&s, "commit refs/heads/main\nmark :%d\ncommitter b <b@example.com> %d +0000\ndata %d\n%s\n", i+1, 1_700_000_000+i, len(msg), msg)
		if i > 0 {
			fmt.Fprintf(&s, "from :%d\n", i)
		}
		fmt.Fprintf(&s, "M 644 inline n\ndata %d\n%s\n\n", len(content), content)
	}
	git(strings.NewReader(s.String()), "fast-import", "--quiet")
	git(nil, "checkout", "-q", "main")
	shas := strings.Fields(git(nil, "rev-list", "--reverse", "main"))
	if len(shas) != n {
		panic(fmt.Sprintf("git fast-import made %d commits, want %d", len(shas), n))
	}
	repoPath = dir
	return dir, shas
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
