//go:build js && wasm

// Command worker is the Go half of the flare-dispatch Cloudflare Worker: the one
// long-lived Go runtime of an isolate, started by worker/src/runtime.js. It serves
// the HTTP handler, Cron Triggers and the actors' Durable Objects.
//
// Until the edge handler lands, the handler is a placeholder: GET /health, plus the
// /__dev/ routes when the var FLARE_DEV_ROUTES is "true".
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/syumai/workers/cloudflare/kv"
	"github.com/syumai/workers/cloudflare/r2"

	_ "github.com/syumai/workers/cloudflare/d1" // database/sql driver "d1"

	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)

	cfg := kinds.DefaultConfig()
	if n, err := strconv.Atoi(cloudflare.Getenv("ADMISSION_CAP")); err == nil && n > 0 {
		cfg.Admission.Cap = n
	}
	effects := &cloudflare.EffectLog{} // the edge's Effects goes in Next
	host := cloudflare.NewHost(kinds.Factory(cfg), cloudflare.Actors{}, cloudflare.HostOptions{Effects: effects, Logger: log})

	instance := make([]byte, 6)
	rand.Read(instance)
	started := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(health{OK: true, Runtime: "go", Instance: hex.EncodeToString(instance),
			UptimeMS: time.Since(started).Milliseconds()})
	})
	sched := &scheduledLog{}
	if cloudflare.Getenv("FLARE_DEV_ROUTES") == "true" {
		mux.Handle("/__dev/", cloudflare.DevHandler(effects))
		mux.HandleFunc("GET /__dev/scheduled", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(sched.list())
		})
		bindingRoutes(mux)
	}
	cloudflare.Serve(cloudflare.Worker{
		Handler: mux,
		Actors:  host,
		Logger:  log,
		Scheduled: func(ctx context.Context, cron string, at time.Time) error {
			log.Info("scheduled", "cron", cron, "at", at)
			sched.add(cron, at)
			return nil
		},
	})
}

// health is GET /health's body; the plain-JS baseline route writes the same.
type health struct {
	OK       bool   `json:"ok"`
	Runtime  string `json:"runtime"`
	Instance string `json:"instance"`
	UptimeMS int64  `json:"uptime_ms"`
}

type scheduledLog struct {
	mu  sync.Mutex
	got []string
}

func (l *scheduledLog) add(cron string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, cron+" @ "+at.UTC().Format(time.RFC3339))
}

func (l *scheduledLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string{}, l.got...)
}

// bindingRoutes exercise syumai/workers' D1, KV and R2 packages inside the shared
// runtime: /__dev/d1?n=N runs N queries, /__dev/kv and /__dev/r2 round-trip a value.
func bindingRoutes(mux *http.ServeMux) {
	var db *sql.DB
	var once sync.Once
	mux.HandleFunc("GET /__dev/d1", func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { db, _ = sql.Open("d1", "RUNS_METADATA") })
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		n = max(n, 1)
		var sum int
		for i := range n {
			var v int
			if err := db.QueryRowContext(r.Context(), "SELECT ? + 1", i).Scan(&v); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			sum += v
		}
		fmt.Fprintf(w, `{"queries":%d,"sum":%d}`, n, sum)
	})
	mux.HandleFunc("GET /__dev/kv", func(w http.ResponseWriter, r *http.Request) {
		ns, err := kv.NewNamespace("CONFIG_KV")
		if err == nil {
			err = ns.PutString("dev-key", r.URL.Query().Get("v"), nil)
		}
		var got string
		if err == nil {
			got, err = ns.GetString("dev-key", nil)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, got)
	})
	mux.HandleFunc("POST /__dev/r2/{key}", func(w http.ResponseWriter, r *http.Request) {
		b, err := r2.NewBucket("RUNS_STORAGE")
		if err == nil {
			_, err = b.Put(r.PathValue("key"), r.Body, nil)
		}
		var obj *r2.Object
		if err == nil {
			obj, err = b.Get(r.PathValue("key"))
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if obj == nil {
			http.Error(w, "not found after put", http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Size", strconv.Itoa(obj.Size))
		io.Copy(w, obj.Body)
	})
}
