// Package porttest is the contract every adapter of an edge port is held to: Blobs,
// Metadata, KV, Actors and Sandboxes. An adapter's own tests call the port's suite
// with a constructor; the Worker runs the same suites in-process against its real
// bindings (the dev route /__dev/contract/, see specs/architecture.md).
//
// The suites use only T, the part of testing.TB they need, and never import testing:
// the Worker links this package, and the testing package has no place in it.
package porttest

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
)

// T is what a suite's test needs from its runner; *testing.T implements it.
type T interface {
	Helper()
	Error(args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// Runner runs named subtests: *testing.T is one (R = *testing.T), Recorder another.
type Runner[R any] interface {
	T
	Run(name string, f func(R)) bool
}

// test is one case of a suite over port P.
type test[P any] struct {
	name string
	f    func(t T, p P)
}

// run runs each case as a subtest on a port of its own.
func run[R Runner[R], P any](t R, tests []test[P], newPort func(t R) P) {
	for _, tc := range tests {
		t.Run(tc.name, func(t R) { tc.f(t, newPort(t)) })
	}
}

// Cases lists the names of a suite's cases ("metadata", "kv", "actors", "sandboxes"), for a runner that
// reports from elsewhere (the Worker) to show it ran them all.
func Cases(suite string) []string {
	var names []string
	switch suite {
	case "metadata":
		for _, tc := range metadataTests {
			names = append(names, tc.name)
		}
	case "kv":
		for _, tc := range kvTests {
			names = append(names, tc.name)
		}
	case "actors":
		for _, tc := range actorsTests {
			names = append(names, tc.name)
		}
	case "sandboxes":
		for _, tc := range sandboxesTests {
			names = append(names, tc.name)
		}
	}
	return names
}

// Result is one subtest's outcome as Recorder saw it.
type Result struct {
	Name     string   `json:"name"`
	Failures []string `json:"failures,omitempty"`
}

// Recorder runs suites where go test does not (inside the Worker) and records each
// subtest's failures. Fatal ends the subtest's goroutine, as testing.T's does.
type Recorder struct {
	name    string
	mu      *sync.Mutex
	results *[]Result
	fails   []string
}

// NewRecorder returns a root recorder.
func NewRecorder() *Recorder { return &Recorder{mu: &sync.Mutex{}, results: &[]Result{}} }

// Results lists the subtests run so far, in the order they finished.
func (r *Recorder) Results() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), *r.results...)
}

// Run implements Runner.
func (r *Recorder) Run(name string, f func(*Recorder)) bool {
	sub := &Recorder{name: strings.TrimPrefix(r.name+"/"+name, "/"), mu: r.mu, results: r.results}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				sub.fail(fmt.Sprint("panic: ", p))
			}
		}()
		f(sub)
	}()
	<-done
	r.mu.Lock()
	*r.results = append(*r.results, Result{Name: sub.name, Failures: sub.fails})
	r.mu.Unlock()
	if len(sub.fails) > 0 {
		r.fails = append(r.fails, sub.name+" failed")
	}
	return len(sub.fails) == 0
}

func (r *Recorder) fail(msg string) { r.fails = append(r.fails, msg) }

// Helper implements T.
func (r *Recorder) Helper() {}

// Error implements T.
func (r *Recorder) Error(args ...any) { r.fail(fmt.Sprintln(args...)) }

// Errorf implements T.
func (r *Recorder) Errorf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }

// Fatal implements T.
func (r *Recorder) Fatal(args ...any) { r.fail(fmt.Sprintln(args...)); runtime.Goexit() }

// Fatalf implements T.
func (r *Recorder) Fatalf(format string, args ...any) {
	r.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

// named prefixes a case's messages with name, for the variants of one case (a Fatal
// in a variant ends the case).
func named(t T, name string) T { return prefixed{t, name + ": "} }

type prefixed struct {
	T
	p string
}

func (p prefixed) Error(args ...any)                 { p.T.Helper(); p.T.Error(append([]any{p.p}, args...)...) }
func (p prefixed) Errorf(format string, args ...any) { p.T.Helper(); p.T.Errorf(p.p+format, args...) }
func (p prefixed) Fatal(args ...any)                 { p.T.Helper(); p.T.Fatal(append([]any{p.p}, args...)...) }
func (p prefixed) Fatalf(format string, args ...any) { p.T.Helper(); p.T.Fatalf(p.p+format, args...) }
