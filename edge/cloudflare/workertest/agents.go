//go:build !js

package workertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// ClosedPort returns the URL of a loopback port nothing listens on: a Worker whose
// AGENT_URL is there has sandboxes that cannot start, like one whose agent supervisor
// is stopped (or, deployed, whose Containers cannot start).
func ClosedPort() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port), nil
}

// Supervisor is a running `flare agent-supervisor`: the AGENT_URL of a local Worker,
// one agent process per sandbox id.
type Supervisor struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	logs *logBuffer
}

// supervisorReady starts the line the supervisor prints once it listens
// (cmd/flare/supervisor.go).
const supervisorReady = "flare-agent-supervisor listening on "

// StartSupervisor runs `flare agent-supervisor` on a random loopback port with its
// sandboxes' workspaces under root.
func StartSupervisor(ctx context.Context, flare, root string) (*Supervisor, error) {
	cmd := exec.Command(flare, "agent-supervisor", "--listen", "127.0.0.1:0", "--root", root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := &logBuffer{max: 256 << 10}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start flare agent-supervisor: %w", err)
	}
	s := &Supervisor{cmd: cmd, done: make(chan struct{}), logs: logs}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), supervisorReady); ok {
				select {
				case ready <- strings.TrimSpace(u):
				default:
				}
				continue
			}
			io.WriteString(logs, sc.Text()+"\n")
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case s.URL = <-ready:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("flare agent-supervisor exited before listening:\n%s", logs.String())
	case <-ctx.Done():
		s.Stop()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		s.Stop()
		return nil, errors.New("flare agent-supervisor did not listen within 30 s")
	}
}

// Stop kills the supervisor and its agents (each agent has a process group of its
// own and dies with its parent).
func (s *Supervisor) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Logs returns what the supervisor and its agents wrote on stderr (the last 256 KiB).
func (s *Supervisor) Logs() string { return s.logs.String() }
