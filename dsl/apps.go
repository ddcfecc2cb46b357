package dsl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sharded runs body for index 1..count (total = count), at most concurrency at a time
// (0 means all at once), in this attempt, and returns the results in index order with
// the first error by index. Steps inside body need names unique per index.
func Sharded[T any](c *Ctx, count, concurrency int, body func(c *Ctx, index, total int) (T, error)) ([]T, error) {
	if count < 1 {
		return nil, &StepFailed{Cause: fmt.Sprintf("sharded: count %d < 1", count)}
	}
	if concurrency <= 0 || concurrency > count {
		concurrency = count
	}
	out := make([]T, count)
	errs := make([]error, count)
	slots := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
			case <-c.Done():
				errs[i] = context.Cause(c)
				return
			}
			defer func() { <-slots }()
			out[i], errs[i] = body(c, i+1, count)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// BootSpec is an app to start in the sandbox.
type BootSpec struct {
	Dir     string
	Command string
	Port    int
	Timeout time.Duration // for the port to open; default 120 s
	Env     map[string]string
}

// App is a booted app.
type App struct {
	Process Process `json:"process"`
	Port    int     `json:"port"`
	URL     string  `json:"url"` // http://127.0.0.1:<port>, as commands in the sandbox reach it
}

// BootApp starts b.Command detached and waits for b.Port to accept connections
// (contract bootApp): *PortNeverOpened when it does not within the timeout or the
// command exits first. It is not a step: the app lives as long as the attempt, so
// every attempt boots it again.
func BootApp(c *Ctx, b BootSpec) (App, error) {
	if c.Sandbox == nil {
		return App{}, &ExecFailed{ExitCode: -1, Cause: "no sandbox"}
	}
	if b.Port < 1 || b.Port > 65535 {
		return App{}, &StepFailed{Cause: fmt.Sprintf("boot app: port %d is not a TCP port", b.Port)}
	}
	if b.Timeout <= 0 {
		b.Timeout = 120 * time.Second
	}
	p, err := c.Sandbox.RunDetached(c, ExecRequest{Dir: b.Dir, Command: b.Command, Env: b.Env})
	if err != nil {
		return App{}, err
	}
	if err := c.Sandbox.WaitForPort(c, p, b.Port, b.Timeout); err != nil {
		return App{Process: p, Port: b.Port}, err
	}
	c.logger().Info("app booted", "port", b.Port, "log", p.LogURI)
	return App{Process: p, Port: b.Port, URL: "http://127.0.0.1:" + strconv.Itoa(b.Port)}, nil
}

// Probe is one probed path.
type Probe struct {
	Path   string `json:"path"`
	Status int    `json:"status"` // HTTP status; 0 when no response
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// Probes is what ProbeHTTP found.
type Probes struct {
	Checked int     `json:"checked"`
	Failed  int     `json:"failed"`
	Results []Probe `json:"results"`
}

// ProbeHTTP requests baseURL+path for each path from inside the sandbox, as the durable
// step name (contract probeHttp): curl without -f and without following redirects, each
// path its own command log; a path is healthy when curl exits 0 with a status in
// [200, 400). A path that does not answer is a failed probe, not an error.
func ProbeHTTP(c *Ctx, name, baseURL string, paths []string) (Probes, error) {
	if c.Sandbox == nil {
		return Probes{}, &ExecFailed{ExitCode: -1, Cause: "no sandbox"}
	}
	base := strings.TrimRight(baseURL, "/")
	return Step(c, name, func(ctx context.Context) (Probes, error) {
		out := Probes{Results: make([]Probe, 0, len(paths))}
		for _, p := range paths {
			if !strings.HasPrefix(p, "/") {
				p = "/" + p
			}
			cmd := "curl -sS -o /dev/null --max-time 30 -w '%{http_code}' " + ShellQuote(base+p)
			res, err := c.Sandbox.Exec(ctx, ExecRequest{Command: cmd, Timeout: 45 * time.Second})
			pr := Probe{Path: p}
			var timeout *ExecTimeout
			switch {
			case errors.As(err, &timeout):
				pr.Error = "timed out"
			case err != nil:
				return out, err
			default:
				pr.Status, _ = strconv.Atoi(strings.TrimSpace(res.StdoutTail))
				pr.OK = res.ExitCode == 0 && pr.Status >= 200 && pr.Status < 400
				if res.ExitCode != 0 {
					pr.Error = clip(strings.TrimSpace(res.StderrTail), 300)
				}
			}
			out.Checked++
			if !pr.OK {
				out.Failed++
			}
			out.Results = append(out.Results, pr)
		}
		c.logger().Info(fmt.Sprintf("%d/%d endpoints healthy", out.Checked-out.Failed, out.Checked))
		return out, nil
	}, Timeout(time.Duration(len(paths)+1)*time.Minute))
}

// ShellQuote quotes s for sh: one argument, nothing expanded.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
