package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// lockedWriter serialises the step lines of follow and the output lines of
// streamOutput on one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// streamOutput prints the command's output lines as they are written, from the log
// viewer's event stream (edge/viewer.go): stdout lines as they are, stderr lines
// prefixed "[stderr] ". It returns at the stream's end event, or when ctx ends; a
// dropped stream is resumed from its last event id.
func (c *stackClient) streamOutput(ctx context.Context, id string, out io.Writer) {
	u := c.url + "/logs/" + url.PathEscape(id) + "?format=events&t=" + edge.LogToken(edge.Config{HMACSecret: c.secret}, id)
	client := &http.Client{Transport: c.http.Transport} // no overall timeout: the stream lasts the run
	last := ""
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return
		}
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := client.Do(req)
		if err == nil {
			ended := false
			if resp.StatusCode == http.StatusOK {
				ended = readOutput(resp.Body, out, &last)
			}
			resp.Body.Close()
			if ended {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// readOutput prints the line events of one stream; true when it saw the end.
func readOutput(r io.Reader, out io.Writer, last *string) bool {
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
			if event == "end" {
				return true
			}
		case strings.HasPrefix(line, "id: "):
			*last = line[len("id: "):]
		case strings.HasPrefix(line, "data: ") && event == "line":
			var v struct{ K, T string }
			if json.Unmarshal([]byte(line[len("data: "):]), &v) != nil {
				continue
			}
			switch v.K {
			case "out", "raw":
				io.WriteString(out, v.T+"\n")
			case "err":
				io.WriteString(out, "[stderr] "+v.T+"\n")
			}
		}
	}
	return false
}
