// Package sandboxes is the local Sandboxes port: one `flare agent` child process per
// sandbox id, as a Container would be, each with its own workspace, an environment
// built from an allowlist (never the edge's secrets), and a process group of its own
// that dies with flare up (on Linux even by kill -9: Pdeathsig) and is killed whole on stop.
// Nothing a run starts outlives its sandbox: a PID namespace holds it (Isolate), or, on
// Linux without isolation, a supervisor that is the child subreaper of it all (Supervise).
package sandboxes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// ReadyPrefix starts the line an agent prints on stdout once it listens.
const ReadyPrefix = "flare-agent listening on "

// SubreaperFlag, right after the agent command, makes the agent binary call Supervise
// instead of being the agent: Procs adds it on Linux without isolation.
const SubreaperFlag = "--subreaper"

// Procs starts agents as child processes.
type Procs struct {
	Command []string // the agent command, e.g. [/path/to/flare, agent]
	Root    string   // workspaces live in Root/<sandbox>; keep it outside the data directory
	Log     *slog.Logger
	// Isolate runs each agent under bubblewrap (see bwrapArgs); DataDir is never bound into it.
	Isolate bool
	DataDir string
	// Fresh starts every agent as a Container starts: an empty workspace (whatever an
	// earlier agent of the sandbox left is removed) and none of the host's toolchain
	// caches (freshEnv), so what a run finds on disk is what it restored itself.
	Fresh bool
	// GoLayer is the image layer a fresh sandbox's GOCACHE starts as a copy of
	// (GoLayer(); "": none), as a Container's starts with its image's.
	GoLayer string
	// IdleAfter stops an agent that has had no attempt for this long and removes its
	// workspace (zero: never), so agents and workspaces do not grow with commits.
	IdleAfter time.Duration
	// KeepWorkspaces leaves workspaces in place (--keep-workspace, for debugging):
	// neither a run's end nor the idle reaper removes them.
	KeepWorkspaces bool

	HTTP *http.Client

	reaper   sync.Once
	stop     chan struct{}
	retiring sync.WaitGroup // RunEnded's work, waited for by Close
	closed   bool           // under mu

	mu    sync.Mutex
	procs map[string]*proc
	gate  map[string]*sync.Mutex // one start at a time per sandbox

	spare  *spare         // the next fresh sandbox's copy of GoLayer (under mu)
	spareN int            // names spares (under mu)
	spares sync.WaitGroup // spare copies under way, waited for by Close
}

type proc struct {
	cmd        *exec.Cmd // the agent, or Supervise running it (supervised; see stop)
	supervised bool
	url        string
	ws         string
	last       time.Time     // the last Start handed to it (under Procs.mu)
	done       chan struct{} // closed once the agent and every process of its sandbox are gone
}

var _ edge.Sandboxes = (*Procs)(nil)

// agentEnv is an agent process's whole environment: the host's, filtered by
// agentapi.PassEnv (the list the agent filters its commands' by too), plus its
// workspace as HOME and its sandbox id.
func agentEnv(lookup func(string) (string, bool), ws, sandbox string) []string {
	env := agentapi.InheritEnv(lookup)
	if env["TMPDIR"] == "" {
		env["TMPDIR"] = os.TempDir()
	}
	env["HOME"], env["FLARE_SANDBOX"] = ws, sandbox
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func (p *Procs) sandboxLock(sandbox string) *sync.Mutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate = map[string]*sync.Mutex{}
	}
	if p.gate[sandbox] == nil {
		p.gate[sandbox] = &sync.Mutex{}
	}
	return p.gate[sandbox]
}

// Start implements edge.Sandboxes: it starts the sandbox's agent if it is not
// running, then hands it the attempt.
func (p *Procs) Start(ctx context.Context, sandbox, pool string, s agentapi.Start) error {
	g := p.sandboxLock(sandbox)
	g.Lock()
	defer g.Unlock()
	pr, err := p.ensure(sandbox, s)
	if err != nil {
		return err
	}
	p.mu.Lock()
	pr.last = time.Now()
	p.mu.Unlock()
	p.reaper.Do(p.startReaper)
	return p.post(ctx, pr.url+agentapi.PathStart, s.ServerToken, s)
}

// Stop implements edge.Sandboxes: it asks the agent to cancel the attempt and, if the
// agent does not answer, kills its whole process group (a hung or lost agent).
func (p *Procs) Stop(ctx context.Context, sandbox string, c agentapi.Cancel) error {
	p.mu.Lock()
	pr := p.procs[sandbox]
	p.mu.Unlock()
	if pr == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := p.post(cctx, pr.url+agentapi.PathCancel, c.ServerToken, c); err != nil {
		p.kill(sandbox, pr)
	}
	return nil
}

// RunEnded is told that the run on sandbox ended: once its agent runs no attempt
// (the ending one reports its exit first) the agent is stopped and the workspace
// removed, unless KeepWorkspaces, so a run's files and processes do not outlive it.
// It does not wait: the effect that calls it must return at once.
func (p *Procs) RunEnded(sandbox string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.retiring.Add(1)
	go func() {
		defer p.retiring.Done()
		p.retire(sandbox)
	}()
}

// retire stops the sandbox's agent and removes its workspace, holding the sandbox's
// start gate so no attempt starts meanwhile. An agent still busy after a bound (the
// sandbox's next run started before this ran) or not answering is left alone: its
// own run's end, or the idle reaper, comes back for it.
func (p *Procs) retire(sandbox string) {
	defer p.refillSpare() // the next fresh sandbox's layer, copied between runs
	g := p.sandboxLock(sandbox)
	g.Lock()
	defer g.Unlock()
	p.mu.Lock()
	pr := p.procs[sandbox]
	p.mu.Unlock()
	if pr != nil {
		if p.KeepWorkspaces {
			return // the agent stays with its workspace; the reaper stops it when idle
		}
		deadline := time.Now().Add(10 * time.Second)
		// Closing kills every agent anyway: no need to wait for this one.
		for n := p.attempts(pr); n != 0 && !p.isClosed(); n = p.attempts(pr) {
			if n < 0 || time.Now().After(deadline) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.kill(sandbox, pr)
	}
	if p.KeepWorkspaces {
		return
	}
	if err := removeTree(filepath.Join(p.Root, sandbox)); err != nil && p.Log != nil {
		p.Log.Warn("remove workspace", "sandbox", sandbox, "err", err)
	}
}

func (p *Procs) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Close kills every agent.
func (p *Procs) Close() {
	p.reaper.Do(func() {}) // no reaper starts after Close
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.retiring.Wait()
	p.mu.Lock()
	all := p.procs
	p.procs = nil
	if p.stop != nil {
		close(p.stop)
		p.stop = nil
	}
	p.mu.Unlock()
	for sb, pr := range all {
		p.kill(sb, pr)
	}
	p.spares.Wait() // no spare starts once closed
	if p.GoLayer != "" {
		_ = removeTree(p.Root + "-spare")
	}
}

// Running counts live agent processes.
func (p *Procs) Running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.procs)
}

// Kill kills a sandbox's agent (tests use it as a crash).
func (p *Procs) Kill(sandbox string) bool {
	p.mu.Lock()
	pr := p.procs[sandbox]
	p.mu.Unlock()
	if pr == nil {
		return false
	}
	p.kill(sandbox, pr)
	return true
}

func (p *Procs) kill(sandbox string, pr *proc) {
	pr.stop()
	p.mu.Lock()
	if p.procs[sandbox] == pr {
		delete(p.procs, sandbox)
	}
	p.mu.Unlock()
}

// stop kills the agent and returns once it and every process of its sandbox are gone.
// A supervisor is asked (SIGTERM) and given the time its sweep is bounded by; a
// supervisor that does not exit by then is killed with its group, as an agent is.
func (pr *proc) stop() {
	if pr.cmd.Process == nil {
		return
	}
	if pr.supervised {
		_ = pr.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-pr.done:
			return
		case <-time.After(15 * time.Second):
		}
	}
	_ = syscall.Kill(-pr.cmd.Process.Pid, syscall.SIGKILL)
	<-pr.done
}

func (p *Procs) ensure(sandbox string, s agentapi.Start) (*proc, error) {
	p.mu.Lock()
	pr := p.procs[sandbox]
	p.mu.Unlock()
	if pr != nil {
		select {
		case <-pr.done:
		default:
			return pr, nil
		}
	}
	ws := filepath.Join(p.Root, sandbox)
	if p.Fresh {
		if err := removeTree(ws); err != nil {
			return nil, fmt.Errorf("sandbox %s: fresh workspace: %w", sandbox, err)
		}
	}
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox %s: workspace: %w", sandbox, err)
	}
	if p.Fresh && p.GoLayer != "" {
		if err := p.seedGo(filepath.Join(ws, ".cache", "go-build")); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", sandbox, err)
		}
	}
	inner := ws // the workspace's path as the agent and its commands see it
	if p.Isolate && p.Fresh {
		inner = FixedWorkspace
	}
	gocache := filepath.Join(inner, ".cache", "go-build")
	argv := append([]string{}, p.Command...)
	supervised := false
	if !p.Isolate {
		// No PID namespace ends with the agent: a supervisor, the subreaper of
		// everything the agent starts, kills what is left (where there is one).
		sub := subreaperArgs()
		argv, supervised = append(argv, sub...), len(sub) > 0
	}
	argv = append(argv, "--listen", "127.0.0.1:0", "--workspace", inner)
	lookup := os.LookupEnv
	if p.Fresh {
		lookup = freshEnv(os.LookupEnv)
	}
	env := agentEnv(lookup, inner, sandbox)
	if p.Isolate {
		// Inside bwrap a missing binary only shows as an agent that never listens:
		// name it here, as a plain start would.
		if _, err := exec.LookPath(p.Command[0]); err != nil {
			return nil, fmt.Errorf("sandbox %s: start agent: %w", sandbox, err)
		}
		ro := toolchains(p.Command[0], p.DataDir, lookup)
		if repo := localRepo(s); repo != "" {
			ro = append(ro, repo)
		}
		argv = bwrapArgs(argv, ws, inner, ro, 3)
		// The host's caches are read-only or invisible inside: the sandbox's own go here.
		env = append(env, "TMPDIR=/tmp", "GOCACHE="+gocache)
	} else if p.Fresh {
		env = append(env, "GOCACHE="+gocache) // where the image layer was copied, as in a Container
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = ws
	cmd.Env = env
	if s.ServerToken != "" { // the agent's server token (edge.AgentServerToken)
		cmd.Env = append(cmd.Env, agentapi.EnvServerToken+"="+s.ServerToken)
	}
	cmd.SysProcAttr = sysProcAttr(supervised)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var info *os.File // bwrap's --info-fd: the host pid of the sandbox's PID-namespace init
	if p.Isolate {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		cmd.ExtraFiles = []*os.File{w}
		info = r
	}
	if err := cmd.Start(); err != nil {
		if info != nil {
			info.Close()
			cmd.ExtraFiles[0].Close()
		}
		return nil, fmt.Errorf("sandbox %s: start agent: %w", sandbox, err)
	}
	pr = &proc{cmd: cmd, supervised: supervised, ws: ws, done: make(chan struct{})}
	nsInit := make(chan int, 1)
	if info != nil {
		cmd.ExtraFiles[0].Close() // the child has it; EOF once bwrap closes its copy
		go func() {
			var st struct {
				ChildPID int `json:"child-pid"`
			}
			_ = json.NewDecoder(info).Decode(&st)
			info.Close()
			nsInit <- st.ChildPID
		}()
	} else {
		nsInit <- 0
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, ReadyPrefix); ok {
				select {
				case ready <- strings.TrimSpace(u):
				default:
				}
				continue
			}
			fmt.Fprintln(os.Stderr, "["+sandbox+"] "+line)
		}
	}()
	go func() {
		_ = cmd.Wait()
		// bwrap's monitor has exited; its sandbox dies with it (--die-with-parent kills
		// the namespace's init, and the kernel every process in the namespace), but not
		// synchronously. A restarted attempt must not meet the old one's commands, so
		// done waits for the init to be gone: the kernel removes it only after the rest.
		waitGone(<-nsInit)
		// Without the sandbox (--no-isolation) the supervisor has killed what the agent
		// left; where there is none (not Linux), or it was itself killed, a command that
		// outlives its agent was re-parented to init but is still in the agent's
		// session: kill whatever is left there.
		sweepSession(cmd.Process.Pid)
		close(pr.done)
	}()
	select {
	case pr.url = <-ready:
	case <-pr.done:
		return nil, fmt.Errorf("sandbox %s: agent exited before listening", sandbox)
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return nil, fmt.Errorf("sandbox %s: agent did not listen within 30s", sandbox)
	}
	p.mu.Lock()
	if p.procs == nil {
		p.procs = map[string]*proc{}
	}
	p.procs[sandbox] = pr
	p.mu.Unlock()
	if p.Log != nil {
		p.Log.Debug("agent started", "sandbox", sandbox, "pid", cmd.Process.Pid, "url", pr.url)
	}
	return pr, nil
}

func (p *Procs) startReaper() {
	if p.IdleAfter <= 0 {
		return
	}
	p.mu.Lock()
	p.stop = make(chan struct{})
	stop := p.stop
	p.mu.Unlock()
	go func() {
		t := time.NewTicker(max(p.IdleAfter/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.reapIdle()
			}
		}
	}()
}

// reapIdle stops the agents idle past IdleAfter (no Start since, and the agent
// reports no attempt) and removes their workspaces. It holds the sandbox's start gate,
// so no Start lands on an agent being reaped.
func (p *Procs) reapIdle() {
	p.mu.Lock()
	var idle []string
	for sb, pr := range p.procs {
		if time.Since(pr.last) > p.IdleAfter {
			idle = append(idle, sb)
		}
	}
	p.mu.Unlock()
	for _, sb := range idle {
		g := p.sandboxLock(sb)
		g.Lock()
		p.mu.Lock()
		pr := p.procs[sb]
		p.mu.Unlock()
		if pr != nil && time.Since(pr.last) > p.IdleAfter && p.attempts(pr) == 0 {
			p.kill(sb, pr)
			if p.KeepWorkspaces {
				g.Unlock()
				continue
			}
			if err := removeTree(pr.ws); err != nil && p.Log != nil {
				p.Log.Warn("remove idle workspace", "sandbox", sb, "err", err)
			}
			if p.Log != nil {
				p.Log.Debug("idle agent reaped", "sandbox", sb)
			}
		}
		g.Unlock()
	}
}

// attempts asks an agent how many attempts it runs; -1 when it does not answer
// (then it is left alone: a hung agent is the edge's to handle).
func (p *Procs) attempts(pr *proc) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pr.url+agentapi.PathHealth, nil)
	if err != nil {
		return -1
	}
	hc := p.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var h struct {
		Attempts []json.RawMessage `json:"attempts"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil {
		return -1
	}
	return len(h.Attempts)
}

// sweepSession kills every live process of session sid until none is left (bounded
// at 10 s). A process that made a session of its own (setsid) escapes it; the PID
// namespace of an isolated sandbox, or the supervisor, does not let it. Without /proc
// it does nothing.
func sweepSession(sid int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := processes(func(_, s int) bool { return s == sid })
		if len(left) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// processes lists the live (not zombie) processes whose parent and session match,
// from /proc.
func processes(match func(ppid, sid int) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session …: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 4 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		ppid, err1 := strconv.Atoi(f[1])
		sid, err2 := strconv.Atoi(f[3])
		if err1 == nil && err2 == nil && match(ppid, sid) {
			out = append(out, pid)
		}
	}
	return out
}

// waitGone returns once pid has exited (gone or a zombie), or after 10s.
func waitGone(pid int) {
	if pid <= 0 {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *Procs) post(ctx context.Context, url, token string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := p.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 300 {
		return errors.New("POST " + url + ": " + strconv.Itoa(resp.StatusCode) + " " + strings.TrimSpace(string(msg)))
	}
	return nil
}

// freshMarker is a name only freshEnv answers: toolchains binds no default module
// cache for it. It is not in agentapi.PassEnv, so it never reaches an agent.
const freshMarker = "FLARE_FRESH_SANDBOX"

// freshEnv hides the host's toolchain caches from a fresh sandbox (Procs.Fresh): the
// tools then use their defaults under the sandbox's HOME, its workspace, as they do in
// a Container. Toolchains themselves stay: RUSTUP_HOME (rustup's toolchains, not a
// cache) is named when the host uses its default, since HOME moves to the workspace.
func freshEnv(lookup func(string) (string, bool)) func(string) (string, bool) {
	return func(k string) (string, bool) {
		switch k {
		case freshMarker:
			return "1", true
		case "GOCACHE", "GOMODCACHE", "GOPATH", "npm_config_cache", "CARGO_HOME":
			return "", false
		case "RUSTUP_HOME":
			if v, ok := lookup(k); ok {
				return v, ok
			}
			if home, err := os.UserHomeDir(); err == nil {
				if st, err := os.Stat(filepath.Join(home, ".rustup")); err == nil && st.IsDir() {
					return filepath.Join(home, ".rustup"), true
				}
			}
			return "", false
		}
		return lookup(k)
	}
}

// removeTree removes a workspace, including Go's read-only module cache directories.
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil || !errors.Is(err, os.ErrPermission) {
		return err
	}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
