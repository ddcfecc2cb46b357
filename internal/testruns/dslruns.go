package testruns

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// DSL returns the test runs of the DSL's capabilities: a run that sleeps durably and a
// run that exercises the sandbox, artifacts, configuration and io capabilities.
func DSL() []dsl.Run { return []dsl.Run{Sleep, Caps} }

// SleepInputs are test-sleep's.
type SleepInputs struct {
	SleepMs int64  `json:"sleepMs"`
	Marker  string `json:"marker"` // a file each step appends its name to
}

// Sleep records "before", sleeps durably, records "after".
var Sleep = dsl.Define(dsl.Spec{Name: "test-sleep", Version: "1.0.0", MaxDuration: 5 * time.Minute},
	func(c *dsl.Ctx, in SleepInputs) (map[string]any, error) {
		mark := func(name string) error {
			_, err := dsl.Step(c, name, func(ctx context.Context) (dsl.ExecResult, error) {
				return c.Sandbox.Exec(ctx, dsl.ExecRequest{Command: "echo " + name + " >> " + dsl.ShellQuote(in.Marker)})
			})
			return err
		}
		if err := mark("before"); err != nil {
			return nil, err
		}
		started, err := dsl.Now(c, "started")
		if err != nil {
			return nil, err
		}
		if err := dsl.Sleep(c, "nap", time.Duration(in.SleepMs)*time.Millisecond); err != nil {
			return nil, err
		}
		if err := mark("after"); err != nil {
			return nil, err
		}
		return map[string]any{"attempt": c.Attempt, "sleptMs": time.Since(started).Milliseconds()}, nil
	})

// CapsInputs are test-caps'.
type CapsInputs struct {
	Repo string `json:"repo"`
	SHA  string `json:"sha"`
	Port int    `json:"port"`
}

// CapsOutput is what test-caps saw.
type CapsOutput struct {
	Readme       string         `json:"readme"`
	ExposedURL   string         `json:"exposedUrl"`
	Probes       dsl.Probes     `json:"probes"`
	DetachedExit int            `json:"detachedExit"`
	Artifacts    []dsl.Artifact `json:"artifacts"`
	Greeting     string         `json:"greeting"`
	Forbidden    string         `json:"forbidden"`
	Prior        string         `json:"prior"`
	Changes      []dsl.Change   `json:"changes"`
}

// Caps exercises the capabilities on a checkout of a repository with a README.md.
var Caps = dsl.Define(dsl.Spec{Name: "test-caps", Version: "1.0.0", MaxDuration: 5 * time.Minute},
	func(c *dsl.Ctx, in CapsInputs) (CapsOutput, error) {
		var out CapsOutput
		dir, err := dsl.Checkout(c, "checkout", in.Repo, in.SHA)
		if err != nil {
			return out, err
		}
		readme, err := c.Sandbox.ReadFile(c, path.Join(dir, "README.md"))
		if err != nil {
			return out, err
		}
		out.Readme = string(readme)

		app, err := dsl.BootApp(c, dsl.BootSpec{Dir: dir, Command: fmt.Sprintf("exec /usr/bin/python3 -m http.server %d --bind 127.0.0.1", in.Port), Port: in.Port, Timeout: 30 * time.Second})
		if err != nil {
			return out, err
		}
		if out.ExposedURL, err = c.Sandbox.ExposePort(c, app.Port); err != nil {
			return out, err
		}
		if out.Probes, err = dsl.ProbeHTTP(c, "probe", out.ExposedURL, []string{"/README.md", "/missing"}); err != nil {
			return out, err
		}
		p, err := c.Sandbox.RunDetached(c, dsl.ExecRequest{Dir: dir, Command: "echo detached; echo extra > extra.txt; exit 3"})
		if err != nil {
			return out, err
		}
		res, err := c.Sandbox.WaitForExit(c, p)
		if err != nil {
			return out, err
		}
		out.DetachedExit = res.ExitCode
		if out.Changes, err = c.Sandbox.Changes(c, dir); err != nil {
			return out, err
		}

		if _, err := c.Artifacts.Upload(c, "readme.txt", path.Join(dir, "README.md"), ""); err != nil {
			return out, err
		}
		if _, err := c.Artifacts.Upload(c, "site", dir+"/site", ""); err != nil {
			return out, err
		}
		if out.Artifacts, err = c.Artifacts.List(c); err != nil {
			return out, err
		}

		out.Greeting = dsl.ConfigString(c, "test-caps.greeting", "default greeting")
		if _, err := c.Config.Get(c, []string{"offload-test.secret"}); err != nil {
			out.Forbidden = err.Error()
		}
		prior, found, err := c.IO.PriorExecution(c, "test-caps")
		if err != nil {
			return out, err
		}
		if found {
			out.Prior = prior.Exec + " " + prior.Status + " " + strings.TrimSpace(string(prior.Output[:min(20, len(prior.Output))]))
		}
		return out, nil
	})
