//go:build flaretest

package main

import "github.com/flare-dispatch/flare-dispatch/internal/testruns"

// The triggers' test runs (scheduled, findings, approval) and the DSL's.
func init() { testRuns = append(testRuns, append(testruns.All(), testruns.DSL()...)...) }
