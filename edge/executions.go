package edge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// authorizeLogs checks the execution id and its capability token (?t=); it writes the
// error and returns false when the request may not see the execution.
func (s *Server) authorizeLogs(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !ValidExecutionID(id) {
		writeError(w, http.StatusBadRequest, "invalid_execution_id", "execution id must match ^[A-Za-z0-9:_-]{3,128}$")
		return "", false
	}
	if s.Config.HMACSecret == "" {
		writeError(w, http.StatusServiceUnavailable, "logs_not_configured", "no key material for log links on this deploy")
		return "", false
	}
	if !constantEqual(r.URL.Query().Get("t"), LogToken(s.Config, id)) {
		writeError(w, http.StatusForbidden, "forbidden", "missing or invalid log token")
		return "", false
	}
	return id, true
}

// executionWithSteps reads an execution and its steps, answering 404 or 500 itself
// when it cannot (the status route and the viewer page).
func (s *Server) executionWithSteps(w http.ResponseWriter, r *http.Request, id string) (Execution, []StepRow, bool) {
	e, err := s.Meta.Execution(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "execution_not_found", fmt.Sprintf("no execution %q", id))
		return e, nil, false
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return e, nil, false
	}
	steps, err := s.Meta.Steps(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return e, nil, false
	}
	return e, steps, true
}

func (s *Server) execution(w http.ResponseWriter, r *http.Request) {
	id, ok := s.authorizeLogs(w, r)
	if !ok {
		return
	}
	e, steps, ok := s.executionWithSteps(w, r, id)
	if !ok {
		return
	}
	files, err := s.logFiles(r, id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "blob_error", err.Error())
		return
	}
	t := r.URL.Query().Get("t")
	logs := make([]map[string]any, 0, len(files))
	for _, f := range files {
		logs = append(logs, map[string]any{"file": f.name, "size": f.size,
			"url": s.origin(r) + "/v1/executions/" + id + "/logs/" + f.name + "?t=" + t})
	}
	if steps == nil {
		steps = []StepRow{}
	}
	out := map[string]any{"execution": e, "steps": steps, "logs": logs, "logsUrl": s.LogLink(s.origin(r), id),
		"artifacts": s.artifactList(r.Context(), s.origin(r), id)}
	if len(e.Summary) > 0 {
		out["summary"] = e.Summary
	}
	if c, found, _ := s.KV.Get(r.Context(), "check-run/"+id); found {
		out["check"] = json.RawMessage(c)
	}
	if u, found := s.Usage(r.Context(), id); found { // model calls: tokens and cost (agentic.go)
		out["modelUsage"] = u
	}
	writeJSON(w, http.StatusOK, out)
}

// logFile is one log file, made of one or more numbered segments.
type logFile struct {
	name     string
	size     int64
	segments []string
}

// Log keys: logs/<exec>/<file>.ndjson is written as numbered segments
// logs/<exec>/<file>.ndjson.<NNNNNN> so lines are readable while a command runs.
// splitSegmentKey splits a log segment's key, "<file>.ndjson" or "<file>.ndjson.<n>",
// into the file and the segment number ("" for the first); ok is false for any other
// key (the shape ^(.+\.ndjson)(?:\.(\d+))?$, no newline).
func splitSegmentKey(key string) (file, n string, ok bool) {
	if strings.Contains(key, "\n") {
		return "", "", false
	}
	if len(key) > len(".ndjson") && strings.HasSuffix(key, ".ndjson") {
		return key, "", true
	}
	i := strings.LastIndexByte(key, '.')
	if i < 0 || i == len(key)-1 || !pattern.Digits.All(key[i+1:]) {
		return "", "", false
	}
	if file := key[:i]; len(file) > len(".ndjson") && strings.HasSuffix(file, ".ndjson") {
		return file, key[i+1:], true
	}
	return "", "", false
}

func (s *Server) logFiles(r *http.Request, exec string) ([]logFile, error) {
	prefix := "logs/" + exec + "/"
	infos, err := s.Blobs.List(r.Context(), prefix)
	if err != nil {
		return nil, err
	}
	byName := map[string]*logFile{}
	for _, in := range infos {
		name, _, ok := splitSegmentKey(strings.TrimPrefix(in.Key, prefix))
		if !ok || strings.Contains(name, "/") {
			continue
		}
		f := byName[name]
		if f == nil {
			f = &logFile{name: name}
			byName[name] = f
		}
		f.size += in.Size
		f.segments = append(f.segments, in.Key)
	}
	out := make([]logFile, 0, len(byName))
	for _, f := range byName {
		sort.Slice(f.segments, func(i, j int) bool { return segNum(f.segments[i]) < segNum(f.segments[j]) })
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return logOrder(out[i].name) < logOrder(out[j].name) })
	return out, nil
}

func segNum(key string) int {
	_, num, _ := splitSegmentKey(key)
	n, _ := strconv.Atoi(num)
	return n
}

// logOrder sorts exec < exec-2 < exec-10 < step-named files (contract §3).
func logOrder(name string) string {
	base := strings.TrimSuffix(name, ".ndjson")
	if base == "exec" {
		return "0"
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(base, "exec-")); err == nil && strings.HasPrefix(base, "exec-") {
		return fmt.Sprintf("1%08d", n)
	}
	return "2" + base
}

// validLogFile is the shape ^exec(-[A-Za-z0-9_]+)?\.ndjson$.
func validLogFile(name string) bool {
	if name == "exec.ndjson" {
		return true
	}
	mid, ok := strings.CutPrefix(name, "exec-")
	mid, ok2 := strings.CutSuffix(mid, ".ndjson")
	return ok && ok2 && logFileChars.Run(mid, 1, len(mid))
}

var logFileChars = pattern.NewSet("A-Za-z0-9_")

func (s *Server) logFile(w http.ResponseWriter, r *http.Request) {
	id, ok := s.authorizeLogs(w, r)
	if !ok {
		return
	}
	name := r.PathValue("file")
	if !validLogFile(name) {
		writeError(w, http.StatusBadRequest, "invalid_log_file", "log file must match ^exec(-[A-Za-z0-9_]+)?\\.ndjson$", "field", "file")
		return
	}
	files, err := s.logFiles(r, id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "blob_error", err.Error())
		return
	}
	for _, f := range files {
		if f.name == name {
			s.streamLog(w, r, id, []logFile{f}, r.URL.Query().Get("format") == "text", false)
			return
		}
	}
	writeError(w, http.StatusNotFound, "log_not_found", fmt.Sprintf("no log %q for execution %q", name, id))
}

// logsAll streams every log of the execution as text (or ?format=ndjson), files
// separated by a header.
func (s *Server) logsAll(w http.ResponseWriter, r *http.Request) {
	id, ok := s.authorizeLogs(w, r)
	if !ok {
		return
	}
	if r.URL.Query().Get("format") == "" && viewerFormat(r) == "html" { // a browser opened logsUrl
		s.viewerPage(w, r, id)
		return
	}
	s.serveAllLogs(w, r, id, r.URL.Query().Get("format") != "ndjson")
}

// serveAllLogs is every log of an authorized execution: GET /v1/executions/:id/logs
// and the viewer link's text and ndjson answers.
func (s *Server) serveAllLogs(w http.ResponseWriter, r *http.Request, id string, text bool) {
	files, err := s.logFiles(r, id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "blob_error", err.Error())
		return
	}
	if len(files) == 0 {
		writeError(w, http.StatusNotFound, "no_logs", fmt.Sprintf("execution %q has no logs yet", id))
		return
	}
	s.streamLog(w, r, id, files, text, true)
}

func (s *Server) streamLog(w http.ResponseWriter, r *http.Request, id string, files []logFile, text, separators bool) {
	ct := "application/x-ndjson"
	if text {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if e, err := s.Meta.Execution(r.Context(), id); err == nil && actors.Status(e.Status).Terminal() {
		w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	}
	w.WriteHeader(http.StatusOK)
	for _, f := range files {
		if separators {
			fmt.Fprintf(w, "\n===== %s =====\n", f.name)
		}
		s.eachSegment(r.Context(), f, func(body io.Reader) {
			if text {
				renderText(w, body)
			} else {
				_, _ = io.Copy(w, body)
			}
		})
	}
}

// eachSegment hands f's segments to read, in order; a segment pruned between the
// listing and the read is skipped.
func (s *Server) eachSegment(ctx context.Context, f logFile, read func(io.Reader)) {
	for _, key := range f.segments {
		body, _, err := s.Blobs.Get(ctx, key)
		if err != nil {
			continue
		}
		read(body)
		body.Close()
	}
}

// renderText turns NDJSON log records into lines (logRecord): "$ cmd", the line,
// "[stderr] line", "[exit N after M ms]"; anything else verbatim.
func renderText(w io.Writer, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		v := logRecord("", sc.Bytes())
		switch v.Kind {
		case "cmd":
			if v.Text == "$ " {
				continue // a meta record without a command
			}
		case "err":
			v.Text = "[stderr] " + v.Text
		case "exit":
			v.Text = "[" + v.Text + "]"
		}
		fmt.Fprintf(w, "%s\n", v.Text)
	}
}

// logRecord reads one NDJSON record of a log: its kind (cmd, out, err, exit, or raw
// for a line that is not a record) and its text, as written (escapes included).
func logRecord(file string, line []byte) viewLine {
	if kind, text, ok := plainRecord(line); ok {
		return viewLine{File: file, Kind: kind, Text: text}
	}
	return decodeRecord(file, line)
}

// Most records are a line of output as the agent writes it, {"stream":"stdout",
// "line":"…"} or stderr, whose text has nothing JSON escapes: plainRecord reads those
// without the decoder (it was half of a log's rendering), and decodeRecord the rest.
// TestPlainRecordReadsAsTheDecoderDoes holds the two equal.
const (
	stdoutRecord = `{"stream":"stdout","line":"`
	stderrRecord = `{"stream":"stderr","line":"`
)

func plainRecord(line []byte) (kind, text string, ok bool) {
	var mid []byte
	switch {
	case !bytes.HasSuffix(line, []byte(`"}`)):
		return "", "", false
	case bytes.HasPrefix(line, []byte(stdoutRecord)) && len(line) >= len(stdoutRecord)+2:
		kind, mid = "out", line[len(stdoutRecord):len(line)-2]
	case bytes.HasPrefix(line, []byte(stderrRecord)) && len(line) >= len(stderrRecord)+2:
		kind, mid = "err", line[len(stderrRecord):len(line)-2]
	default:
		return "", "", false
	}
	if !utf8.Valid(mid) {
		return "", "", false
	}
	if bytes.IndexByte(mid, '\\') < 0 {
		for _, c := range mid {
			if c < 0x20 || c == '"' {
				return "", "", false
			}
		}
		return kind, string(mid), true
	}
	// The one-character escapes (a test's tab-separated output); \u goes to the decoder.
	out := make([]byte, 0, len(mid))
	for i := 0; i < len(mid); i++ {
		c := mid[i]
		switch {
		case c < 0x20 || c == '"':
			return "", "", false
		case c != '\\':
			out = append(out, c)
			continue
		case i+1 == len(mid):
			return "", "", false
		}
		i++
		switch mid[i] {
		case '"', '\\', '/':
			out = append(out, mid[i])
		case 't':
			out = append(out, '\t')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		default:
			return "", "", false
		}
	}
	return kind, string(out), true
}

// decodeRecord is logRecord through the JSON decoder.
func decodeRecord(file string, line []byte) viewLine {
	var rec struct {
		Stream     string `json:"stream"`
		Line       string `json:"line"`
		Command    string `json:"command"`
		ExitCode   int    `json:"exitCode"`
		DurationMs int64  `json:"durationMs"`
		TimedOut   bool   `json:"timedOut"`
	}
	if json.Unmarshal(line, &rec) != nil || rec.Stream == "" {
		return viewLine{File: file, Kind: "raw", Text: string(line)}
	}
	switch rec.Stream {
	case "meta":
		return viewLine{File: file, Kind: "cmd", Text: "$ " + rec.Command}
	case "stderr":
		return viewLine{File: file, Kind: "err", Text: rec.Line}
	case "exit":
		if rec.TimedOut {
			return viewLine{File: file, Kind: "exit", Text: fmt.Sprintf("timed out after %d ms", rec.DurationMs)}
		}
		return viewLine{File: file, Kind: "exit", Text: fmt.Sprintf("exit %d after %d ms", rec.ExitCode, rec.DurationMs)}
	}
	return viewLine{File: file, Kind: "out", Text: rec.Line}
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	if s.Config.AdminToken == "" {
		writeError(w, http.StatusServiceUnavailable, "admin_not_configured", "ADMIN_TOKEN is unset on this deploy")
		return
	}
	if !constantEqual(bearer(r), s.Config.AdminToken) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer ADMIN_TOKEN required")
		return
	}
	id := r.PathValue("id")
	if !ValidExecutionID(id) {
		writeError(w, http.StatusBadRequest, "invalid_execution_id", "execution id must match ^[A-Za-z0-9:_-]{3,128}$")
		return
	}
	if _, err := s.Meta.Execution(r.Context(), id); errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "execution_not_found", fmt.Sprintf("no execution %q", id))
		return
	}
	reply, err := s.Actors.Call(r.Context(), actors.RunAddr(id), actors.RunCancel{Exec: id, Reason: "cancelled by an administrator"})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cancel_failed", err.Error())
		return
	}
	st, _ := reply.(actors.RunStatus)
	writeJSON(w, http.StatusAccepted, map[string]any{"executionId": id, "status": st.Status})
}

// EndedLookup is the S3 endpoints' check that an execution is over (s3verify.Ended):
// its metadata row has a terminal status, or there is no row at all.
func EndedLookup(meta Metadata) func(ctx context.Context, exec string) (bool, error) {
	return func(ctx context.Context, exec string) (bool, error) {
		ex, err := meta.Execution(ctx, exec)
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return actors.Status(ex.Status).Terminal(), nil
	}
}
