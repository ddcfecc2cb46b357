package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// consoleEntry is one line of console.ndjson.
type consoleEntry struct {
	Page  int       `json:"page"`
	Time  time.Time `json:"time"`
	Level string    `json:"level"` // log, warning, error, … or exception
	Text  string    `json:"text"`
	URL   string    `json:"url,omitempty"`
}

// netEntry is one line of network.ndjson.
type netEntry struct {
	Page     int       `json:"page"`
	Time     time.Time `json:"time"`
	Method   string    `json:"method"`
	URL      string    `json:"url"`
	Type     string    `json:"type,omitempty"`
	Status   int       `json:"status,omitempty"`
	MimeType string    `json:"mimeType,omitempty"`
	Failed   string    `json:"failed,omitempty"` // the error text when no response came
}

const maxText = 2000

func clipText(s string) string {
	if len(s) <= maxText {
		return s
	}
	return s[:maxText] + "…"
}

func (s *session) onConsole(w *watched, e *proto.RuntimeConsoleAPICalled) {
	parts := make([]string, 0, len(e.Args))
	for _, a := range e.Args {
		switch {
		case a.Value.Nil():
			parts = append(parts, a.Description)
		default:
			if str, ok := a.Value.Val().(string); ok {
				parts = append(parts, str)
			} else {
				parts = append(parts, a.Value.JSON("", ""))
			}
		}
	}
	s.addConsole(consoleEntry{Page: w.n, Time: time.Now(), Level: string(e.Type), Text: clipText(strings.Join(parts, " "))})
}

func (s *session) onException(w *watched, e *proto.RuntimeExceptionThrown) {
	d := e.ExceptionDetails
	text := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		text = d.Exception.Description
	}
	s.addConsole(consoleEntry{Page: w.n, Time: time.Now(), Level: "exception", Text: clipText(text), URL: d.URL})
}

func (s *session) addConsole(c consoleEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.console) < maxConsole {
		s.console = append(s.console, c)
	}
}

func (s *session) onRequest(w *watched, e *proto.NetworkRequestWillBeSent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.network[e.RequestID]; ok || len(s.netSeq) >= maxNetwork {
		return // a redirect keeps its first entry
	}
	s.network[e.RequestID] = &netEntry{Page: w.n, Time: time.Now(), Method: e.Request.Method, URL: clipText(e.Request.URL), Type: string(e.Type)}
	s.netSeq = append(s.netSeq, e.RequestID)
}

// onResponse completes a request's entry; a response without one (a navigation's
// document can be reported before this session's Network domain saw its request) gets
// an entry of its own.
func (s *session) onResponse(w *watched, e *proto.NetworkResponseReceived) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.network[e.RequestID]
	if !ok {
		if len(s.netSeq) >= maxNetwork {
			return
		}
		method := "GET"
		if e.Response.RequestHeaders != nil {
			if m, ok := e.Response.RequestHeaders[":method"]; ok && m.Str() != "" {
				method = m.Str()
			}
		}
		n = &netEntry{Page: w.n, Time: time.Now(), Method: method, URL: clipText(e.Response.URL), Type: string(e.Type)}
		s.network[e.RequestID] = n
		s.netSeq = append(s.netSeq, e.RequestID)
	}
	n.Status, n.MimeType = e.Response.Status, e.Response.MIMEType
}

func (s *session) onFailed(e *proto.NetworkLoadingFailed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.network[e.RequestID]; ok && n.Status == 0 {
		n.Failed = e.ErrorText
		if e.Canceled {
			n.Failed = "canceled"
		}
	}
}

// writeLogs writes console.ndjson and network.ndjson and counts them into c.
func (s *session) writeLogs(dir string, c *dsl.Capture) error {
	s.mu.Lock()
	console := append([]consoleEntry(nil), s.console...)
	network := make([]netEntry, 0, len(s.netSeq))
	for _, id := range s.netSeq {
		network = append(network, *s.network[id])
	}
	s.mu.Unlock()
	for _, e := range console {
		c.ConsoleLines++
		if e.Level == "error" || e.Level == "exception" || e.Level == "assert" {
			c.ConsoleErrors++
		}
	}
	for _, n := range network {
		c.Requests++
		if n.Status >= 400 || (n.Status == 0 && n.Failed != "" && n.Failed != "canceled") {
			c.FailedLoads++
		}
	}
	if err := writeNDJSON(filepath.Join(dir, "console.ndjson"), console); err != nil {
		return err
	}
	return writeNDJSON(filepath.Join(dir, "network.ndjson"), network)
}

func writeNDJSON[T any](path string, rows []T) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeTrace ends the trace and streams it to path; tracing stops with it.
func (s *session) writeTrace(ctx context.Context, path string) (int64, error) {
	s.tracing = false
	var complete proto.TracingTracingComplete
	wait := s.rb.Context(ctx).WaitEvent(&complete)
	if err := (proto.TracingEnd{}).Call(s.rb); err != nil {
		return 0, err
	}
	wait()
	if complete.Stream == "" {
		return 0, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.Copy(f, rod.NewStreamReader(s.rb.Context(ctx), complete.Stream))
	if err != nil {
		return n, err
	}
	return n, f.Close()
}
