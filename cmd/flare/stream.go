package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Following an execution live: `flare run`, `flare dispatch --wait` and `flare logs -f`
// read the log viewer's event stream (edge/viewer.go: `line`, `state` and `end`
// events), one connection per execution that the edge serves with one blob listing a
// second, rather than polling the API. A fan-out's children (listed in the parent's
// `state`) are followed on streams of their own, their lines prefixed with the child's
// key, like `docker compose logs`.

// watchOpts says what a watch prints.
type watchOpts struct {
	out   io.Writer // where lines and steps go; nil prints nothing (--quiet)
	json  bool      // NDJSON events instead of text (logs -f --json)
	steps bool      // step and status lines (run and dispatch --wait)
}

// watcher is one watch: its output (serialised across the streams) and the children
// it follows.
type watcher struct {
	c    *stackClient
	opts watchOpts
	mu   sync.Mutex
	kids map[string]bool
	wg   sync.WaitGroup
}

// buffer gathers what the watch prints and writes it out every 50 ms, and once more
// when stop is called: a chatty run's lines go out a batch per write instead of a
// write each, which was most of the time `flare run` took to follow a 3-million-line
// command.
func (w *watcher) buffer() (stop func()) {
	bw := bufio.NewWriterSize(w.opts.out, 64<<10)
	w.opts.out = bw
	flush := func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		_ = bw.Flush()
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				flush()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		flush()
	}
}

// printf writes one whole line (or JSON event) at a time, so the streams of a fan-out
// interleave by line.
func (w *watcher) printf(format string, args ...any) {
	if w.opts.out == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.opts.out, format, args...)
}

func (w *watcher) event(v map[string]any) {
	b, _ := json.Marshal(v)
	w.printf("%s\n", b)
}

// watch follows execution id until its stream's end event and returns its status.
func (c *stackClient) watch(ctx context.Context, id string, opts watchOpts) (string, error) {
	w := &watcher{c: c, opts: opts, kids: map[string]bool{}}
	if opts.out != nil {
		defer w.buffer()()
	}
	u := "/logs/" + url.PathEscape(id) + "?format=events&t=" + edge.LogToken(edge.Config{HMACSecret: c.secret}, id)
	status, err := w.stream(ctx, u, "", true)
	w.wg.Wait() // the children end before their parent does; their last lines come first
	return status, err
}

// stream reads one execution's events, reconnecting (with Last-Event-ID, so nothing
// repeats) when the edge closes a long stream; prefix marks a child's lines.
func (w *watcher) stream(ctx context.Context, path, prefix string, top bool) (string, error) {
	client := &http.Client{Transport: w.c.http.Transport} // no overall timeout: the stream lasts the run
	last := ""
	st := &streamState{seen: map[string]string{}}
	failures := 0
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.c.url+path, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("Accept", "text/event-stream")
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := client.Do(req)
		if err == nil {
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
				resp.Body.Close()
				return "", fmt.Errorf("GET %s: %s: %s", strings.SplitN(path, "?", 2)[0], resp.Status, strings.TrimSpace(string(b)))
			}
			status, ended := w.read(ctx, resp.Body, &last, prefix, top, st)
			resp.Body.Close()
			if ended {
				return status, nil
			}
			failures = 0
		} else if failures++; failures > 30 {
			return "", err
		}
		select {
		case <-ctx.Done():
			return st.status, ctx.Err()
		case <-time.After(time.Second): // the edge asked for 2 s (retry:); a dropped connection waits 1 s
		}
	}
}

// streamState is what one stream has shown: step states and the status.
type streamState struct {
	seen          map[string]string
	status, queue string
}

type sseState struct {
	Status   string `json:"status"`
	Duration string `json:"duration"`
	Steps    []struct {
		Name, Status, Duration, Exit, Error string
	} `json:"steps"`
	Children []struct {
		Key, Exec, Status, Events string
	} `json:"children"`
	Queue string `json:"queue"`
}

// read handles one response's events; ended is true at the end event.
func (w *watcher) read(ctx context.Context, r io.Reader, last *string, prefix string, top bool, st *streamState) (status string, ended bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			event = ""
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			*last = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			data := line[len("data: "):]
			switch event {
			case "line":
				w.line(data, prefix)
			case "state":
				w.state(ctx, data, prefix, top, st)
			case "end":
				_ = json.Unmarshal([]byte(data), &st.status)
				return st.status, true
			}
		}
	}
	return st.status, false
}

func (w *watcher) line(data, prefix string) {
	if w.opts.out == nil { // --quiet: a chatty run's lines are not even decoded
		return
	}
	var v struct{ K, T, F string }
	if json.Unmarshal([]byte(data), &v) != nil {
		return
	}
	if w.opts.json {
		w.event(map[string]any{"type": "line", "shard": strings.Trim(prefix, "[] "), "kind": v.K, "file": v.F, "text": v.T})
		return
	}
	switch v.K {
	case "err":
		w.printf("%s[stderr] %s\n", prefix, v.T)
	case "exit":
		w.printf("%s[%s]\n", prefix, v.T)
	default: // out, raw, cmd ("$ command")
		w.printf("%s%s\n", prefix, v.T)
	}
}

func (w *watcher) state(ctx context.Context, data, prefix string, top bool, st *streamState) {
	var s sseState
	if json.Unmarshal([]byte(data), &s) != nil {
		return
	}
	for _, c := range s.Children { // follow each child once, on a stream of its own
		w.mu.Lock()
		fresh := !w.kids[c.Exec]
		w.kids[c.Exec] = true
		w.mu.Unlock()
		if fresh && c.Events != "" {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				_, _ = w.stream(ctx, c.Events, "["+c.Key+"] ", false)
			}()
		}
	}
	for _, step := range s.Steps {
		if st.seen[step.Name] == step.Status {
			continue
		}
		st.seen[step.Name] = step.Status
		if w.opts.json {
			w.event(map[string]any{"type": "step", "shard": strings.Trim(prefix, "[] "), "name": step.Name, "status": step.Status, "duration": step.Duration, "error": step.Error})
			continue
		}
		if !w.opts.steps {
			continue
		}
		switch step.Status {
		case "running":
			w.printf("%s▸ %s\n", prefix, step.Name)
		case "success":
			w.printf("%s✓ %s (%s)\n", prefix, step.Name, step.Duration)
		default:
			what := step.Status
			if step.Error != "" {
				what += " " + step.Error
			}
			w.printf("%s✗ %s (%s) %s\n", prefix, step.Name, step.Duration, what)
		}
	}
	if s.Status != st.status || s.Queue != st.queue {
		st.status, st.queue = s.Status, s.Queue
		line := s.Status
		if s.Queue != "" {
			line = s.Queue // "Queued — waiting for a sandbox slot behind N runs …"
		}
		if w.opts.json {
			w.event(map[string]any{"type": "status", "shard": strings.Trim(prefix, "[] "), "status": s.Status, "queue": s.Queue})
		} else if w.opts.steps {
			w.printf("%s· %s\n", prefix, line)
		}
	}
}

// statusLine is the one line a command that followed a run ends with: the result,
// the run, the execution, how long, and the link.
func statusLine(conclusion, run, id string, took time.Duration, link string) string {
	mark := "✗"
	switch conclusion {
	case "success":
		mark = "✓"
	case "neutral":
		mark = "⊘"
	}
	return fmt.Sprintf("%s %s %s %s in %s · %s", mark, run, id, conclusion, took.Round(100*time.Millisecond), link)
}
