package main

import (
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// testRuns are added to the registry by builds with -tags flaretest (the local stack's
// tests build the agent so).
var testRuns []dsl.Run

// registry is the runs this binary can execute.
func registry() dsl.Registry {
	return dsl.NewRegistry(append(registryRuns(), testRuns...)...)
}

func registryRuns() []dsl.Run {
	r := runs.Registry()
	out := make([]dsl.Run, 0, len(r))
	for _, name := range r.Names() {
		out = append(out, r[name])
	}
	return out
}
