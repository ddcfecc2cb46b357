//go:build flaretest

package main

import (
	"context"
	"os"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// journalProbe has side effects outside the workspace, so a crash test can count
// how often each step really ran: a (append "a"), b (a command that waits for a
// marker file), c (append "c").
var journalProbe = dsl.Define(dsl.Spec{Name: "journal-probe", Version: "1.0.0", MaxDuration: 10 * time.Minute},
	func(c *dsl.Ctx, in struct {
		Counter string `json:"counter"`
		Marker  string `json:"marker"`
	}) (map[string]int, error) {
		appendTo := func(s string) func(context.Context) (bool, error) {
			return func(context.Context) (bool, error) {
				f, err := os.OpenFile(in.Counter, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				if err != nil {
					return false, err
				}
				defer f.Close()
				_, err = f.WriteString(s + "\n")
				return true, err
			}
		}
		if _, err := dsl.Step(c, "a", appendTo("a")); err != nil {
			return nil, err
		}
		res, err := dsl.Step(c, "b", func(ctx context.Context) (dsl.ExecResult, error) {
			return c.Sandbox.Exec(ctx, dsl.ExecRequest{Command: "echo b-started; while [ ! -f '" + in.Marker + "' ]; do sleep 0.1; done; echo b-done", Timeout: 5 * time.Minute})
		})
		if err != nil {
			return nil, err
		}
		if _, err := dsl.Step(c, "c", appendTo("c")); err != nil {
			return nil, err
		}
		return map[string]int{"exitCode": res.ExitCode}, nil
	})

func init() { testRuns = append(testRuns, journalProbe) }
