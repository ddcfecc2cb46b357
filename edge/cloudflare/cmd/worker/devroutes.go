//go:build js && wasm

package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/containers"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/kv"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/r2"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
	"github.com/flare-dispatch/flare-dispatch/edge/sqlmeta"
)

// health is GET /__dev/health's body; the plain-JS baseline route /__dev/js/health
// writes the same. instance tells runtimes apart (a new one after a crash).
type health struct {
	OK       bool   `json:"ok"`
	Runtime  string `json:"runtime"`
	Instance string `json:"instance"`
	UptimeMS int64  `json:"uptime_ms"`
}

// firedLog remembers what the cron ticks did, for GET /__dev/scheduled.
type firedLog struct {
	mu  sync.Mutex
	got []firedTick
}

type firedTick struct {
	Cron  string       `json:"cron"`
	At    time.Time    `json:"at"`
	Fired []edge.Fired `json:"fired"`
}

func (l *firedLog) add(cron string, at time.Time, fired []edge.Fired) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, firedTick{Cron: cron, At: at.UTC(), Fired: fired})
}

func (l *firedLog) list() []firedTick {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]firedTick{}, l.got...)
}

// devRoutes are the Worker's own /__dev/ routes (with FLARE_DEV_ROUTES only):
//
//	GET  /__dev/health       the runtime's instance id and uptime
//	GET  /__dev/scheduled    the cron ticks seen and what they fired
//	GET  /__dev/d1?n=N       N queries through database/sql on D1
//	POST /__dev/r2/{key}     stores the body in R2 and returns it read back
//	POST /__dev/contract/{port}  runs a port's contract suite (edge/porttest) in this
//	                         isolate against the real bindings: metadata and kv on
//	                         D1 (kv?binding=NAME: on that Workers KV namespace,
//	                         edge/cloudflare/kv), actors on the Durable Objects
//	GET  /__dev/kv/{binding}/{key}  a key of CONFIG_KV or IDEMPOTENCY_KV, read through the edge's port
func devRoutes(mux *http.ServeMux, db *sql.DB, bucket *r2.Bucket, fired *firedLog, kvs map[string]edge.KV) {
	mux.HandleFunc("GET /__dev/kv/{binding}/{key}", func(w http.ResponseWriter, r *http.Request) {
		kv := kvs[r.PathValue("binding")]
		if kv == nil {
			http.Error(w, "no such KV binding", http.StatusNotFound)
			return
		}
		v, found, err := kv.Get(r.Context(), r.PathValue("key"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"found": found, "value": v})
	})
	id := make([]byte, 6)
	rand.Read(id)
	instance, started := hex.EncodeToString(id), time.Now()
	mux.HandleFunc("GET /__dev/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, health{OK: true, Runtime: "go", Instance: instance, UptimeMS: time.Since(started).Milliseconds()})
	})
	mux.HandleFunc("GET /__dev/scheduled", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, fired.list())
	})
	mux.HandleFunc("GET /__dev/d1", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		var sum int
		for i := range max(n, 1) {
			var v int
			if err := db.QueryRowContext(r.Context(), "SELECT ? + 1", i).Scan(&v); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			sum += v
		}
		fmt.Fprintf(w, `{"queries":%d,"sum":%d}`, max(n, 1), sum)
	})
	mux.HandleFunc("POST /__dev/contract/{port}", func(w http.ResponseWriter, r *http.Request) {
		// The suites run here, not from the test process, because the adapter is the
		// Go code in this wasm over the binding: driving D1 from outside would test
		// wrangler's D1, not sqlmeta on it. Each run uses fresh ids (a time prefix).
		rec := porttest.NewRecorder()
		switch r.PathValue("port") {
		case "metadata":
			porttest.Metadata(rec, "worker-", func(*porttest.Recorder) edge.Metadata { return &sqlmeta.Store{DB: db} })
		case "kv":
			binding := r.URL.Query().Get("binding")
			if binding == "" { // sqlmeta on D1
				porttest.KV(rec, "worker-", func(*porttest.Recorder) porttest.KVFixture {
					c := porttest.NewClock(time.Now())
					return porttest.KVFixture{KV: &sqlmeta.Store{DB: db, Now: c.Now}, Advance: c.Advance}
				})
				break
			}
			if _, err := kv.New(binding); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			porttest.KV(rec, "worker-"+binding+"-", func(*porttest.Recorder) porttest.KVFixture {
				ns, _ := kv.New(binding)
				c := porttest.NewClock(time.Now())
				ns.Now = c.Now
				return porttest.KVFixture{KV: ns, Advance: c.Advance}
			})
		case "actors":
			porttest.Actors(rec, "worker-", func(*porttest.Recorder) edge.Actors { return cloudflare.EdgeActors{} })
		case "sandboxes":
			// The sandbox classes are LocalAgentProxy here: the agent is the test's, at
			// AGENT_URL, which also tells what reached each sandbox (GET /__seen).
			agent := cloudflare.Getenv("AGENT_URL")
			if agent == "" {
				http.Error(w, "the sandboxes contract needs AGENT_URL", http.StatusBadRequest)
				return
			}
			porttest.Sandboxes(rec, "worker-", func(*porttest.Recorder) porttest.SandboxFixture {
				return porttest.SandboxFixture{Sandboxes: &containers.Sandboxes{Transport: cloudflare.SandboxTransport},
					Seen: func(sandbox string) []porttest.AgentRequest { return seenBy(r.Context(), agent, sandbox) }}
			})
		default:
			http.Error(w, "no contract suite for "+r.PathValue("port"), http.StatusNotFound)
			return
		}
		writeJSON(w, rec.Results())
	})
	mux.HandleFunc("POST /__dev/r2/{key}", func(w http.ResponseWriter, r *http.Request) {
		if bucket == nil {
			http.Error(w, "no R2 binding", http.StatusInternalServerError)
			return
		}
		key := "dev/" + r.PathValue("key")
		if err := bucket.Put(r.Context(), key, r.Body, edge.BlobMeta{Size: r.ContentLength}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body, meta, err := bucket.Get(r.Context(), key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer body.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Size", strconv.FormatInt(meta.Size, 10))
		w.(http.Flusher).Flush()
		io.Copy(w, body)
	})
}

// seenBy asks the test's agent at AGENT_URL what reached sandbox (nil on any error:
// the contract then reports what is missing).
func seenBy(ctx context.Context, agent, sandbox string) []porttest.AgentRequest {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(agent, "/")+"/__seen?sandbox="+url.QueryEscape(sandbox), nil)
	if err != nil {
		return nil
	}
	res, err := (&cloudflare.FetchTransport{}).RoundTrip(req)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var out []porttest.AgentRequest
	json.NewDecoder(res.Body).Decode(&out)
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
