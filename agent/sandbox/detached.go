package sandbox

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/logship"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// detached is a command started by RunDetached.
type detached struct {
	done chan struct{}
	res  dsl.ExecResult
	err  error
}

// RunDetached implements dsl.Sandbox: the command runs like Exec (own process group,
// command log, r.Timeout) in the background, killed with everything it started when
// ctx ends.
func (s *Sandbox) RunDetached(ctx context.Context, r dsl.ExecRequest) (dsl.Process, error) {
	n := s.nextLog()
	p := dsl.Process{ID: "proc-" + strconv.Itoa(n), Command: s.cfg.Redactor.String(r.Command), LogURI: s.cfg.LogPrefix + logship.ExecName(n)}
	d := &detached{done: make(chan struct{})}
	s.mu.Lock()
	if s.procs == nil {
		s.procs = map[string]*detached{}
	}
	s.procs[p.ID] = d
	s.mu.Unlock()

	started := make(chan struct{})
	go func() {
		defer close(d.done)
		d.res, d.err = s.exec(ctx, r, n, func() { close(started) })
	}()
	select {
	case <-started:
	case <-d.done:
	}
	select {
	case <-d.done: // it could not start at all
		if d.err != nil {
			var ef *dsl.ExecFailed
			if errors.As(d.err, &ef) && d.res.ExitCode == -1 {
				return p, d.err
			}
		}
	default:
	}
	s.cfg.Log.Info("detached command started", "id", p.ID, "log", p.LogURI)
	return p, nil
}

func (s *Sandbox) proc(p dsl.Process) (*detached, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.procs[p.ID]
	if d == nil {
		return nil, &dsl.ExecFailed{ExitCode: -1, Cause: "no detached command " + p.ID + " in this attempt (detached commands do not outlive their attempt)"}
	}
	return d, nil
}

// WaitForExit implements dsl.Sandbox.
func (s *Sandbox) WaitForExit(ctx context.Context, p dsl.Process) (dsl.ExecResult, error) {
	d, err := s.proc(p)
	if err != nil {
		return dsl.ExecResult{ExitCode: -1}, err
	}
	select {
	case <-d.done:
		return d.res, d.err
	case <-ctx.Done():
		return dsl.ExecResult{ExitCode: -1, LogURI: p.LogURI}, context.Cause(ctx)
	}
}

// WaitForPort implements dsl.Sandbox: it dials 127.0.0.1:port every 200 ms.
func (s *Sandbox) WaitForPort(ctx context.Context, p dsl.Process, port int, timeout time.Duration) error {
	var done <-chan struct{}
	if p.ID != "" {
		d, err := s.proc(p)
		if err != nil {
			return err
		}
		done = d.done
	}
	never := &dsl.PortNeverOpened{Port: port, TimeoutSec: int64((timeout + time.Second - 1) / time.Second)}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline.C:
			return never
		case <-done:
			return never // the command exited without ever listening
		case <-tick.C:
		}
	}
}

// ExposePort implements dsl.Sandbox: a local agent's ports are reachable on loopback;
// a production sandbox's get a preview URL from the platform (Config.Expose).
func (s *Sandbox) ExposePort(ctx context.Context, port int) (string, error) {
	if port < 1 || port > 65535 {
		return "", &dsl.ExposePortFailed{Port: port, Cause: "not a TCP port"}
	}
	if s.cfg.Local {
		return "http://127.0.0.1:" + strconv.Itoa(port), nil
	}
	if s.cfg.Expose == nil {
		return "", &dsl.ExposePortFailed{Port: port, Cause: "preview URLs are not configured (SANDBOX_PREVIEW_HOSTNAME)"}
	}
	u, err := s.cfg.Expose(ctx, port)
	if err != nil {
		return "", &dsl.ExposePortFailed{Port: port, Cause: err.Error()}
	}
	return u, nil
}
