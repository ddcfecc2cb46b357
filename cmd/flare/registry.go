package main

import (
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// testRuns are runs compiled in only for the project's own tests (build tag flaretest).
var testRuns []dsl.Run

// registry is the runs this binary serves and executes.
func registry() dsl.Registry {
	r := runs.Registry()
	for _, x := range testRuns {
		r[x.Spec().Name] = x
	}
	return r
}
