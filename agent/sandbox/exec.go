package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/agent/logship"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// TailBytes is how much of each stream an ExecResult keeps inline.
const TailBytes = 16 << 10

// drainAfterExit bounds the wait for output after the command's process group is gone
// (something that left the group may still hold a pipe).
const drainAfterExit = 2 * time.Second

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

// Exec runs r.Command with sh -c in its own process group. The group is killed whole
// (SIGTERM, then SIGKILL after KillGrace) on timeout or when ctx ends, and anything the
// command left running in it is killed when the shell exits. Output is shipped line by
// line as NDJSON to the next command log (exec.ndjson, exec-2.ndjson, …), unless
// r.Quiet.
func (s *Sandbox) Exec(ctx context.Context, r dsl.ExecRequest) (dsl.ExecResult, error) {
	if r.Quiet {
		return s.exec(ctx, r, 0, nil)
	}
	return s.exec(ctx, r, s.nextLog(), nil)
}

// nextLog reserves the number of the next command log.
func (s *Sandbox) nextLog() int {
	s.numbered.Do(func() {
		if s.cfg.LogNumbering != nil {
			first, quota := s.cfg.LogNumbering()
			s.mu.Lock()
			s.nextExec, s.quota = max(1, first), quota
			s.mu.Unlock()
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nextExec
	s.nextExec++
	return n
}

// exec runs one command with command log n (0: none); started, when not nil, is called
// once the process runs (or failed to start).
func (s *Sandbox) exec(ctx context.Context, r dsl.ExecRequest, n int, started func()) (dsl.ExecResult, error) {
	if notify := started; notify != nil {
		var once sync.Once
		defer once.Do(notify) // also when it could not start
		started = func() { once.Do(notify) }
	}
	red := s.cfg.Redactor
	if strings.TrimSpace(r.Command) == "" {
		return dsl.ExecResult{ExitCode: -1}, &dsl.ExecFailed{ExitCode: -1, Cause: "empty command"}
	}
	dir := r.Dir
	if dir == "" {
		dir = s.cfg.Workspace
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join(s.cfg.Workspace, dir)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return dsl.ExecResult{ExitCode: -1}, &dsl.ExecFailed{ExitCode: -1, Cause: red.String(fmt.Sprintf("working directory %s does not exist", dir))}
	}
	env := s.baseEnv()
	for k, v := range r.Env {
		if !dsl.IsEnvName(k) {
			return dsl.ExecResult{ExitCode: -1}, &dsl.ExecFailed{ExitCode: -1, Cause: fmt.Sprintf("invalid environment variable name %q", k)}
		}
		env[k] = v
	}

	var logKey string
	var logf *logship.File
	if n > 0 {
		logKey = s.cfg.LogPrefix + logship.ExecName(n)
	}
	if s.cfg.Logs != nil && n > 0 {
		// Uploads outlive ctx a little so the last lines of a cancelled command land.
		upCtx, cancelUp := context.WithCancel(context.WithoutCancel(ctx))
		defer cancelUp()
		logf = logship.Open(upCtx, s.cfg.Logs, logKey, logship.Options{Quota: s.quota, GiveUp: s.cfg.LogGiveUp})
		logf.Meta(red.String(r.Command))
	}
	log := s.cfg.Log.With("log", logKey)

	outR, outW, err := os.Pipe()
	if err != nil {
		return dsl.ExecResult{ExitCode: -1}, &dsl.ExecFailed{ExitCode: -1, Cause: err.Error()}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return dsl.ExecResult{ExitCode: -1}, &dsl.ExecFailed{ExitCode: -1, Cause: err.Error()}
	}
	cmd := exec.Command("/bin/sh", "-c", r.Command)
	cmd.Dir = dir
	cmd.Env = envList(env)
	cmd.Stdout = outW // *os.File: the child writes the pipe directly, no copying goroutine
	cmd.Stderr = errW
	setProcessGroup(cmd)

	start := time.Now()
	startErr := cmd.Start()
	outW.Close()
	errW.Close()
	if startErr != nil {
		outR.Close()
		errR.Close()
		if logf != nil {
			logf.Line("stderr", red.String(startErr.Error()))
			logf.Exit(-1, 0, false)
			_ = logf.Close()
		}
		return dsl.ExecResult{ExitCode: -1, LogURI: logKey}, &dsl.ExecFailed{ExitCode: -1, Cause: red.String(startErr.Error())}
	}
	pgid := cmd.Process.Pid
	if started != nil {
		started()
	}

	var stdoutTail, stderrTail tail
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); s.pump(outR, "stdout", logf, &stdoutTail) }()
	go func() { defer readers.Done(); s.pump(errR, "stderr", logf, &stderrTail) }()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var timeoutC <-chan time.Time
	if r.Timeout > 0 {
		t := time.NewTimer(r.Timeout)
		defer t.Stop()
		timeoutC = t.C
	}
	timedOut, cancelled := false, false
	select {
	case <-exited: // how it ended is in cmd.ProcessState
	case <-timeoutC:
		timedOut = true
		s.stop(pgid, exited)
	case <-ctx.Done():
		cancelled = true
		s.stop(pgid, exited)
	}
	duration := time.Since(start)
	// The shell is gone; so is anything it left behind in its group.
	_ = killGroup(pgid, syscall.SIGKILL)

	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainAfterExit):
		outR.Close() // a process outside the group still holds the pipe: stop reading
		errR.Close()
		<-drained
	}
	outR.Close()
	errR.Close()

	code := exitCode(cmd.ProcessState)
	res := dsl.ExecResult{
		ExitCode:   code,
		DurationMs: duration.Milliseconds(),
		LogURI:     logKey,
		StdoutTail: stdoutTail.String(),
		StderrTail: stderrTail.String(),
	}
	var lost *logship.LostError
	if logf != nil {
		logf.Exit(code, duration, timedOut)
		if err := logf.Close(); err != nil {
			log.Warn("command log not fully shipped", "err", err)
			if !errors.As(err, &lost) {
				lost = &logship.LostError{Key: logKey, Err: err}
			}
		}
	}
	log.Info("command finished", "exitCode", code, "durationMs", res.DurationMs, "timedOut", timedOut, "cancelled", cancelled)
	switch {
	case timedOut:
		return res, &dsl.ExecTimeout{TimeoutSec: int64((r.Timeout + time.Second - 1) / time.Second), Command: red.String(r.Command)}
	case cancelled:
		return res, fmt.Errorf("command stopped: %w", context.Cause(ctx))
	case lost != nil:
		// The command's record is incomplete (the log shows a gap marker where it can):
		// the run fails rather than pass on a log nobody can read whole.
		return res, &dsl.StorageFull{What: "log " + logship.ExecName(n), Lost: lost.Bytes, Cause: red.String(lost.Err.Error())}
	}
	return res, nil
}

// stop ends the process group: SIGTERM, then SIGKILL if the shell has not exited after
// KillGrace, and waits for the shell.
func (s *Sandbox) stop(pgid int, exited <-chan error) {
	_ = killGroup(pgid, syscall.SIGTERM)
	t := time.NewTimer(s.cfg.KillGrace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		_ = killGroup(pgid, syscall.SIGKILL)
		<-exited
	}
}

// pump ships one stream line by line: redacted, into the log and the tail.
func (s *Sandbox) pump(r io.Reader, stream string, logf *logship.File, t *tail) {
	br := bufio.NewReaderSize(r, logship.MaxLine)
	var partial []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			partial = append(partial, chunk...)
			if len(partial) >= logship.MaxLine { // a very long line: ship it in pieces
				s.emit(stream, string(partial), logf, t)
				partial = partial[:0]
			}
			continue
		}
		line := append(partial, chunk...)
		partial = partial[:0]
		if len(line) > 0 {
			s.emit(stream, strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r"), logf, t)
		}
		if err != nil {
			return
		}
	}
}

func (s *Sandbox) emit(stream, line string, logf *logship.File, t *tail) {
	line = s.cfg.Redactor.String(line)
	t.add(line)
	if logf != nil {
		logf.Line(stream, line)
	}
}

// tail keeps the last TailBytes of a stream.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, line...)
	t.buf = append(t.buf, '\n')
	if len(t.buf) > 2*TailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-TailBytes:]...)
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > TailBytes {
		b = b[len(b)-TailBytes:]
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	return string(b)
}

// exitCode reads how the shell ended; a signal gives 128+n as a shell would report it.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
