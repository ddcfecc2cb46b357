//go:build js && wasm

package cloudflare

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// DevHandler serves the /__dev/ routes that the Worker's integration test and bench
// drive. Mount it only when the var FLARE_DEV_ROUTES is "true" (never in a deployed
// Worker): it can crash the runtime and talks to any actor unauthenticated.
//
//	POST /__dev/actors/{kind}/{key}    body: a message (actors.Marshal) → its reply
//	GET  /__dev/effects                the effects the actors asked for (EffectLog)
//	GET  /__dev/stats                  Go runtime figures
//	GET  /__dev/panic                  a handler panic (→ 500; the runtime survives)
//	GET  /__dev/crash                  a panic on a background goroutine (the runtime dies)
//	GET  /__dev/sleep?ms=N             time.Sleep, then 200
//	POST /__dev/echo                   the request body back
//	GET  /__dev/stream?n=N&gap=D&type=T N flushed chunks, D apart, as Content-Type T
//	GET  /__dev/timer/arm?ms=N         arms a Go timer and returns at once
//	GET  /__dev/timer/wait             waits for the armed timer to fire
//	GET  /__dev/fetch?url=U            GET U through the global fetch (FetchTransport)
//	GET  /__dev/sandbox/{binding}/{name}/{path...}  GET path in a sandbox
//	*    /__dev/request/...            the request as Go sees it (method, URL, host, headers)
func DevHandler(fx *EffectLog) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/__dev/request/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"method": r.Method, "url": r.URL.String(), "host": r.Host,
			"escapedPath": r.URL.EscapedPath(), "contentLength": r.ContentLength, "header": r.Header})
	})
	mux.HandleFunc("POST /__dev/actors/{kind}/{key}", func(w http.ResponseWriter, r *http.Request) {
		to, err := actors.ParseAddr(r.PathValue("kind") + "/" + r.PathValue("key"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		m, err := actors.Unmarshal(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		reply, err := Actors{}.Call(r.Context(), to, m)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		b, _ := actors.Marshal(reply)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	mux.HandleFunc("GET /__dev/effects", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, fx.Entries())
	})
	// sleeping counts /__dev/sleep requests in progress, so a test can wait until its
	// request is inside the runtime instead of sleeping and hoping.
	var sleeping atomic.Int64
	mux.HandleFunc("GET /__dev/stats", func(w http.ResponseWriter, r *http.Request) {
		var m runtime.MemStats
		if r.URL.Query().Has("gc") {
			runtime.GC()
		}
		runtime.ReadMemStats(&m)
		writeJSON(w, map[string]any{"goroutines": runtime.NumGoroutine(), "heapAlloc": m.HeapAlloc,
			"heapSys": m.HeapSys, "sys": m.Sys, "numGC": m.NumGC, "sleeping": sleeping.Load()})
	})
	mux.HandleFunc("GET /__dev/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("dev route panic")
	})
	mux.HandleFunc("GET /__dev/crash", func(w http.ResponseWriter, r *http.Request) {
		go func() { panic("dev route crash: the runtime dies") }()
		<-r.Context().Done()
	})
	mux.HandleFunc("GET /__dev/exit", func(w http.ResponseWriter, r *http.Request) {
		os.Exit(3)
	})
	mux.HandleFunc("GET /__dev/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		sleeping.Add(1)
		defer sleeping.Add(-1)
		start := time.Now()
		time.Sleep(time.Duration(ms) * time.Millisecond)
		writeJSON(w, map[string]any{"slept_ms": time.Since(start).Milliseconds()})
	})
	// A timer armed by one request and awaited by another: Go's wake-up timeout is
	// then armed in a request that has already finished (see worker/src/runtime.js).
	var timerMu sync.Mutex
	var timerDone chan struct{}
	mux.HandleFunc("GET /__dev/timer/arm", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		done := make(chan struct{})
		timerMu.Lock()
		timerDone = done
		timerMu.Unlock()
		time.AfterFunc(time.Duration(ms)*time.Millisecond, func() { close(done) })
		writeJSON(w, map[string]any{"armed_ms": ms})
	})
	mux.HandleFunc("GET /__dev/timer/wait", func(w http.ResponseWriter, r *http.Request) {
		timerMu.Lock()
		done := timerDone
		timerMu.Unlock()
		if done == nil {
			http.Error(w, "no timer armed", http.StatusConflict)
			return
		}
		select {
		case <-done:
			writeJSON(w, map[string]any{"fired": true})
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("POST /__dev/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		n, err := io.Copy(w, r.Body)
		if err != nil {
			http.Error(w, fmt.Sprintf("after %d bytes: %v", n, err), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /__dev/stream", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		gap, _ := time.ParseDuration(r.URL.Query().Get("gap"))
		// The runtime gzips compressible types for clients that accept it, and gzip
		// holds chunks back: a stream must use a type it leaves alone.
		w.Header().Set("Content-Type", r.URL.Query().Get("type"))
		for i := range n {
			if i > 0 {
				time.Sleep(gap)
			}
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("GET /__dev/fetch", func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, r.URL.Query().Get("url"), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		proxy(w, &FetchTransport{}, req)
	})
	mux.HandleFunc("GET /__dev/sandbox/{binding}/{name}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		c, err := SandboxTransport(r.PathValue("binding"), r.PathValue("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://sandbox/"+r.PathValue("path"), nil)
		req.Header.Set("X-Flare-Sandbox", r.PathValue("name"))
		proxy(w, c, req)
	})
	return mux
}

func proxy(w http.ResponseWriter, c http.RoundTripper, req *http.Request) {
	res, err := c.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		if strings.HasPrefix(k, "X-") || k == "Content-Type" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(res.StatusCode)
	io.Copy(w, res.Body)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
