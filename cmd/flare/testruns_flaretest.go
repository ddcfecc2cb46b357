//go:build flaretest

package main

import "github.com/flare-dispatch/flare-dispatch/internal/testruns"

func init() { testRuns = append(testruns.All(), testruns.DSL()...) }
