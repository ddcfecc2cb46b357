//go:build !js

package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/workertest"
	"github.com/flare-dispatch/flare-dispatch/internal/benchstat"
)

// acceptParts splits what one new dispatch costs under wrangler dev into the parts it
// is made of, each timed alone from one client, n rounds interleaved (so drift hits
// every part alike), on a fresh stack whose runs cannot start (ADMISSION_CAP=4, the
// sandboxes at a closed port, as in -backlog): a Go request that does nothing (GET
// /health), a KV read, a D1 query, a message to an existing run object, a replayed
// dispatch (signature check and the idempotency KV hit), a run object created by
// RunStart (its SQLite database, first commit and alarm; its admission request is
// sent after the reply) and a new dispatch (all of it), each of the last two followed
// by a GET /health that finds what it left on the thread. One client at a time: each
// part's latency on a thread shared only with the stack's own runs, not its share
// under load.
func acceptParts(n int) error {
	root, err := builtWorker()
	if err != nil {
		return err
	}
	closed, err := workertest.ClosedPort()
	if err != nil {
		return err
	}
	s, err := startBacklogStack(root, closed, "parts")
	if err != nil {
		return err
	}
	defer s.stop()
	do := func(method, path string, body []byte, hdr map[string]string) error {
		code, raw, err := s.send(method, path, body, hdr)
		if err == nil && code/100 != 2 {
			err = fmt.Errorf("%s %s: %d %s", method, path, code, raw)
		}
		return err
	}
	dispatch := func(key string) error {
		body, hdr := distinctDispatch(key)
		return do(http.MethodPost, "/v1/dispatch/offload-test", body, hdr)
	}
	runStart := func(exec string) error {
		b, _ := actors.Marshal(actors.RunStart{Exec: exec, Run: "offload-test", Pool: "lean", Sandbox: "sb-" + exec, MaxDuration: time.Hour})
		return do(http.MethodPost, "/__dev/actors/run/"+exec, b, nil)
	}
	if err := dispatch("replayed"); err != nil {
		return err
	}
	if err := runStart("existing"); err != nil {
		return err
	}
	query, _ := actors.Marshal(actors.RunQuery{Exec: "existing"})
	health := func(int) error { return do(http.MethodGet, "/health", nil, nil) }
	// A /health right after a part times what that part left on the thread (its
	// background sends, the admission round trip, the effects); the parts after a
	// pause find the thread as quiet as the stack's own retries leave it.
	parts := []struct {
		name  string
		f     func(i int) error
		pause bool // then 300 ms for the thread to settle
		lat   []time.Duration
	}{
		{"GET /health (a Go request, nothing else)", health, false, nil},
		{"a KV read (IDEMPOTENCY_KV, missing key)", func(i int) error {
			return do(http.MethodGet, fmt.Sprintf("/__dev/kv/IDEMPOTENCY_KV/missing-%d", i), nil, nil)
		}, false, nil},
		{"a D1 query (SELECT ? + 1)", func(int) error { return do(http.MethodGet, "/__dev/d1?n=1", nil, nil) }, false, nil},
		{"RunQuery to an existing run object", func(int) error { return do(http.MethodPost, "/__dev/actors/run/existing", query, nil) }, false, nil},
		{"a replayed dispatch (signature, KV hit)", func(int) error { return dispatch("replayed") }, false, nil},
		{"RunStart creating a run object (its reply)", func(i int) error { return runStart(fmt.Sprintf("parts-actor-%d", i)) }, false, nil},
		{"GET /health right after that RunStart", health, true, nil},
		{"a new dispatch (everything, its 202)", func(i int) error { return dispatch(fmt.Sprintf("parts-new-%d", i)) }, false, nil},
		{"GET /health right after that dispatch", health, true, nil},
	}
	load0 := benchstat.LoadAvg()
	for i := range n {
		for j := range parts {
			t0 := time.Now()
			if err := parts[j].f(i); err != nil {
				return err
			}
			parts[j].lat = append(parts[j].lat, time.Since(t0))
			if parts[j].pause {
				time.Sleep(300 * time.Millisecond)
			}
		}
	}
	fmt.Printf("what one dispatch is made of, under wrangler dev, one client, %d rounds interleaved; %s; load average %s–%s:\n",
		n, benchstat.Machine(), load0, benchstat.LoadAvg())
	fmt.Printf("| part | p50 | p90 | p99 |\n|---|---|---|---|\n")
	for _, p := range parts {
		fmt.Printf("| %s | %s | %s | %s |\n", p.name, pct(p.lat, 50), pct(p.lat, 90), pct(p.lat, 99))
	}
	return nil
}
