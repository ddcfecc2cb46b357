//go:build js && wasm

package cloudflare

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"syscall/js"
	"time"
)

// Worker is what the Go program serves inside the Worker's one shared runtime.
type Worker struct {
	// Handler serves every HTTP request the JavaScript entry passes to Go.
	Handler http.Handler
	// Scheduled runs a Cron Trigger; nil refuses them. Background work started
	// with WaitUntil outlives it.
	Scheduled func(ctx context.Context, cron string, at time.Time) error
	// Actors hosts the Durable Object actors; nil refuses actor messages.
	Actors *Host
	// Logger receives panics and failures at the entry points (default slog.Default()).
	Logger *slog.Logger
}

// runtimeContext is the object the JavaScript entry put on globalThis.context before
// it started this program: {env, binding, ready}. The name and shape are those of
// syumai/workers, so its D1, KV and R2 packages find env there too.
var runtimeContext = js.Global().Get("context")

// Serve registers w's entry points on the binding object, tells the JavaScript entry
// that the runtime is ready, and blocks forever: the runtime lives as long as the
// isolate and serves every request, scheduled event and Durable Object of it.
//
// Entry points (the JavaScript side is worker/src/runtime.js):
//
//	fetch(resolve, reject, method, url, headers, body, ctx)       → {status, headers, body}
//	scheduled(resolve, reject, cron, scheduledTimeMs, ctx)        → undefined
//	actorMessage(resolve, reject, objectKey, state, kind, path, body) → {status, body}
//	actorAlarm(resolve, reject, objectKey, state, kind)           → undefined
//	actorFree(objectKey)                                         (synchronous)
//	stats()                                                      (synchronous)
//	gc()                                                         (synchronous)
//
// headers cross as one string of name "\n" value "\n" pairs. Every entry point
// returns at once and does its work on a goroutine; a panic becomes a rejection.
func Serve(w Worker) {
	if runtimeContext.Type() != js.TypeObject {
		panic("cloudflare.Serve: globalThis.context is not set: start this program from worker/src/runtime.js")
	}
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
	s := &server{w: w, log: w.Logger}
	b := runtimeContext.Get("binding")
	b.Set("fetch", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if len(args) >= 2 {
			go s.serveHTTP(args[0], args[1], args[2:])
		}
		return nil
	}))
	b.Set("scheduled", s.entry(s.scheduled))
	b.Set("actorMessage", s.entry(s.actorMessage))
	b.Set("actorAlarm", s.entry(s.actorAlarm))
	b.Set("actorFree", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if w.Actors != nil && len(args) > 0 {
			w.Actors.Free(args[0].String())
		}
		return nil
	}))
	b.Set("stats", js.FuncOf(func(js.Value, []js.Value) any { return s.stats() }))
	// gc frees the js.Values Go no longer uses (their finalizers release them).
	b.Set("gc", js.FuncOf(func(js.Value, []js.Value) any {
		runtime.GC()
		return nil
	}))
	runtimeContext.Call("ready")
	select {}
}

type server struct {
	w   Worker
	log *slog.Logger
}

// entry wraps an asynchronous entry point: args[0] and args[1] are the resolve and
// reject functions of the promise the JavaScript side made; f gets the rest on a new
// goroutine and its result or error settles the promise.
func (s *server) entry(f func(args []js.Value) (any, error)) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		if len(args) < 2 {
			return nil
		}
		resolve, reject, rest := args[0], args[1], args[2:]
		go settle(resolve, reject, func() (any, error) { return s.guard(f, rest) })
		return nil
	})
}

// guard logs a panic with its stack before settle turns it into a rejection.
func (s *server) guard(f func([]js.Value) (any, error), args []js.Value) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.logPanic("entry point", p)
			panic(p)
		}
	}()
	return f(args)
}

func (s *server) logPanic(where string, p any) {
	buf := make([]byte, 16<<10)
	buf = buf[:runtime.Stack(buf, false)]
	s.log.Error("panic in Go "+where, "panic", fmt.Sprint(p), "stack", string(buf))
}

func (s *server) scheduled(args []js.Value) (any, error) {
	if s.w.Scheduled == nil {
		return nil, fmt.Errorf("scheduled event: no handler")
	}
	cron := arg(args, 0).String()
	at := time.UnixMilli(int64(arg(args, 1).Float()))
	ctx, cancel := context.WithCancel(withExecutionContext(context.Background(), arg(args, 2)))
	defer cancel()
	return nil, s.w.Scheduled(ctx, cron, at)
}

func (s *server) stats() any {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	objects := 0
	if s.w.Actors != nil {
		objects = s.w.Actors.Len()
	}
	return map[string]any{
		"goroutines":  runtime.NumGoroutine(),
		"heapAlloc":   m.HeapAlloc,
		"heapSys":     m.HeapSys,
		"sys":         m.Sys,
		"numGC":       m.NumGC,
		"liveObjects": objects,
	}
}

type executionContextKey struct{}

// withExecutionContext attaches the JavaScript ExecutionContext (for waitUntil).
func withExecutionContext(ctx context.Context, ec js.Value) context.Context {
	return context.WithValue(ctx, executionContextKey{}, ec)
}

// WaitUntil runs f on a new goroutine and keeps the Worker invocation of ctx alive
// until f returns (ExecutionContext.waitUntil). f's context is not cancelled when
// the request ends. Outside a request (in a Durable Object) f simply runs.
func WaitUntil(ctx context.Context, f func(context.Context)) {
	bg := context.WithoutCancel(ctx)
	ec, _ := ctx.Value(executionContextKey{}).(js.Value)
	if ec.Type() != js.TypeObject || ec.Get("waitUntil").Type() != js.TypeFunction {
		go f(bg)
		return
	}
	var done js.Value
	executor := js.FuncOf(func(_ js.Value, args []js.Value) any {
		done = args[0]
		return nil
	})
	p := jsPromise.New(executor) // runs executor synchronously
	executor.Release()
	// ec.waitUntil(p), and keep Go's timers ticking while p is pending.
	runtimeContext.Call("waitUntil", ec, p)
	go func() {
		defer done.Invoke()
		defer func() {
			if p := recover(); p != nil {
				slog.Error("panic in WaitUntil", "panic", fmt.Sprint(p))
			}
		}()
		f(bg)
	}()
}

// Env is the Worker's env: its vars, secrets and bindings.
func Env() js.Value { return runtimeContext.Get("env") }

// Getenv returns a var or secret, or "" when it is not set or not a string.
func Getenv(name string) string {
	v := Env().Get(name)
	if v.Type() != js.TypeString {
		return ""
	}
	return v.String()
}

// Bound reports whether env has a binding (an object) called name.
func Bound(name string) bool { return Env().Get(name).Type() == js.TypeObject }
