package edge

import (
	"bufio"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// The log viewer (contract §3, GET /logs/:execution?t=<token>): the link every 202,
// check-run and child status carries. One route, four answers, chosen by ?format= or,
// without it, by Accept:
//   - html: a self-contained page (viewer_assets/viewer.html) under a strict CSP whose
//     script and style carry a fresh nonce per response;
//   - events: a server-sent event stream of rendered lines and step snapshots, tailing
//     the run while it goes (the page's EventSource);
//   - text (the default for non-browsers, so curl, `flare logs` and the Action keep
//     reading plain text from the same link) and ndjson: as /v1/executions/:id/logs.

// The pages are static HTML with @NAME@ slots that fillPage fills, in one pass, with
// fragments built here from escaped values. Not html/template: its executor reaches
// reflect's MethodByName, which keeps every exported method of the Worker alive and
// costs the bundle about 920 KiB gzip (specs/cloudflare.md).
//
//go:embed viewer_assets/viewer.html
var viewerHTML string

func fillPage(page string, slots ...string) string {
	return strings.NewReplacer(slots...).Replace(page)
}

var esc = html.EscapeString

const (
	// viewerTick is how often an events stream looks for new lines: one blob listing
	// per open viewer per tick, and a read of each segment stored since the last.
	viewerTick = time.Second
	// viewerStreamMax bounds one events response; EventSource reconnects with
	// Last-Event-ID and the stream resumes where it stopped.
	viewerStreamMax = 5 * time.Minute
)

func (s *Server) viewer(w http.ResponseWriter, r *http.Request) {
	id, ok := s.authorizeLogs(w, r)
	if !ok {
		return
	}
	switch viewerFormat(r) {
	case "html":
		s.viewerPage(w, r, id)
	case "events":
		s.viewerEvents(w, r, id)
	case "text", "ndjson":
		s.serveAllLogs(w, r, id, viewerFormat(r) == "text")
	default:
		writeError(w, http.StatusBadRequest, "invalid_format", "format must be html, events, text or ndjson", "field", "format")
	}
}

// viewerFormat is ?format=, else what Accept asks for; a client that names no
// preference (curl, fetch's */*) gets text.
func viewerFormat(r *http.Request) string {
	if f := r.URL.Query().Get("format"); f != "" {
		return f
	}
	accept := r.Header.Get("Accept")
	switch {
	case strings.Contains(accept, "text/event-stream"):
		return "events"
	case strings.Contains(accept, "text/html"):
		return "html"
	case strings.Contains(accept, "application/x-ndjson"):
		return "ndjson"
	}
	return "text"
}

// viewerCSP is the page's policy: nothing but its own nonce'd script and style, and
// connections back to this origin (the events stream).
func viewerCSP(nonce string) string {
	return "default-src 'none'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce +
		"'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
}

func newNonce() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)                            // crypto/rand never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b) // no + or /: html/template would escape them
}

// securePageHeaders are the headers of every HTML page the edge serves.
func securePageHeaders(w http.ResponseWriter, nonce string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", viewerCSP(nonce))
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
}

// viewStep is a step as the viewer shows it.
type viewStep struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Attempt  int    `json:"attempt"`
	Started  string `json:"started"`
	Duration string `json:"duration"`
	Exit     string `json:"exit"`
	Error    string `json:"error,omitempty"` // a failed step's typed failure (CommandFailed, ModelCallFailed …)
}

type viewState struct {
	Status   string     `json:"status"`
	Duration string     `json:"duration"`
	Steps    []viewStep `json:"steps"`
	// Children are a fan-out's child executions, each with its own events stream
	// (its log token: the parent's link opens its children's logs), so that `flare
	// run` and `flare logs -f` follow the shards with a prefix each.
	Children []viewChild `json:"children,omitempty"`
	// Queue is the queue-position line while the execution waits for a slot.
	Queue string `json:"queue,omitempty"`
}

type viewChild struct {
	Key    string `json:"key"`
	Exec   string `json:"exec"`
	Status string `json:"status"`
	Events string `json:"events"` // path and query of the child's events stream
	Page   string `json:"page"`   // the child's viewer
}

// viewChildren lists a fan-out's children with their statuses (one query), or nil.
func (s *Server) viewChildren(ctx context.Context, parent string) []viewChild {
	g, found, err := s.childGroup(ctx, parent)
	if err != nil || !found || len(g.Children) == 0 {
		return nil
	}
	status := map[string]string{}
	if rows, err := s.Meta.ListExecutions(ctx, ExecutionFilter{Parent: parent, Limit: len(g.Children) + 1}); err == nil {
		for _, r := range rows {
			status[r.ID] = r.Status
		}
	}
	out := make([]viewChild, 0, len(g.Children))
	for _, c := range g.Children {
		page := "/logs/" + url.PathEscape(c.Exec) + "?t=" + LogToken(s.Config, c.Exec)
		out = append(out, viewChild{Key: c.Key, Exec: c.Exec, Status: status[c.Exec], Events: page + "&format=events", Page: page})
	}
	return out
}

func (s *Server) viewState(e Execution, steps []StepRow) viewState {
	now := s.Now()
	v := viewState{Status: e.Status, Duration: span(e.StartedAt, e.CompletedAt, now), Steps: []viewStep{}}
	for _, st := range steps {
		vs := viewStep{Name: st.Name, Status: st.Status, Attempt: st.Attempt, Duration: span(st.StartedAt, st.CompletedAt, now), Error: st.ErrorTag}
		if !st.StartedAt.IsZero() {
			vs.Started = st.StartedAt.UTC().Format(time.TimeOnly)
		}
		if st.ExitCode != nil {
			vs.Exit = fmt.Sprint(*st.ExitCode)
		}
		v.Steps = append(v.Steps, vs)
	}
	return v
}

// span is end-start rounded for people; a running span counts to now.
func span(start, end, now time.Time) string {
	if start.IsZero() {
		return ""
	}
	if end.IsZero() {
		end = now
	}
	d := end.Sub(start)
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (s *Server) viewerPage(w http.ResponseWriter, r *http.Request, id string) {
	e, steps, ok := s.executionWithSteps(w, r, id)
	if !ok {
		return
	}
	t := url.QueryEscape(r.URL.Query().Get("t"))
	state := s.viewState(e, steps)
	var hdr, rows, arts strings.Builder
	fmt.Fprintf(&hdr, `<h1>%s <span id="status" class="st st-%s">%s</span></h1>`+"\n"+`<div class="meta">%s · %s`,
		esc(e.Run), esc(state.Status), esc(state.Status), esc(e.ID), esc(e.Repo))
	if e.SHA != "" {
		fmt.Fprintf(&hdr, " @ %s", esc(e.SHA))
	}
	if e.Ref != "" {
		fmt.Fprintf(&hdr, " (%s)", esc(e.Ref))
	}
	fmt.Fprintf(&hdr, ` · <span id="duration">%s</span></div>`, esc(state.Duration))
	for _, st := range state.Steps {
		fmt.Fprintf(&rows, `<tr><td>%s</td><td class="st st-%s">%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td></tr>`,
			esc(st.Name), esc(st.Status), esc(st.Status), st.Attempt, esc(st.Started), esc(st.Duration), esc(st.Exit))
	}
	if list := s.artifactList(r.Context(), "", id); len(list) > 0 {
		arts.WriteString(`<table id="artifacts"><tbody>`)
		for _, a := range list {
			fmt.Fprintf(&arts, `<tr><td><a href="%s">%s</a></td><td>%s</td></tr>`, esc(a.URL), esc(a.Name), humanSize(a.Size))
		}
		arts.WriteString(`</tbody></table>`)
	} else {
		arts.WriteString(`<p id="artifacts">none</p>`)
	}
	nonce := newNonce()
	page := fillPage(viewerHTML, "@NONCE@", nonce, "@TITLE@", esc(e.Run+" · "+e.ID), "@HEADER@", hdr.String(),
		"@STEPS@", rows.String(), "@ARTIFACTS@", arts.String(),
		"@EVENTS@", esc("/logs/"+url.PathEscape(id)+"?t="+t+"&format=events"),
		"@DOWNLOAD@", esc("/v1/executions/"+url.PathEscape(id)+"/logs?format=text&t="+t))
	securePageHeaders(w, nonce)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, page)
}

// viewLine is one log line on the events stream. H is the line rendered by
// terminal-to-html from text cleaned by safeTerminalText: escaped text inside spans
// that carry colour classes, nothing else.
type viewLine struct {
	File string `json:"f"`
	Kind string `json:"k"` // out | err | cmd | exit | raw
	HTML string `json:"h"`
	// Text is the line for terminals (`flare run`): SGR colours kept, every other
	// escape and control character removed.
	Text string `json:"t"`
}

// viewerEvents streams `line` events (one per log line, in file order), a `state`
// event whenever the status or the steps change, and `end` once the execution is
// terminal and every line has been sent. The event id is the cursor (lines sent per
// file), so a reconnecting EventSource resumes without repeats.
func (s *Server) viewerEvents(w http.ResponseWriter, r *http.Request, id string) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no")
	cur := parseCursor(r.Header.Get("Last-Event-ID"))
	flusher, canFlush := w.(http.Flusher)
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	deadline := s.Now().Add(viewerStreamMax)
	sizes := map[string]int64{}
	read := map[string]readUpTo{}
	lastState := ""
	for {
		// status before logs: lines read after a terminal status are all the lines
		e, err := s.Meta.Execution(ctx, id)
		if err != nil {
			fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
			return
		}
		files, err := s.logFiles(r, id)
		if err != nil {
			fmt.Fprintf(w, "event: error\ndata: %q\n\n", err.Error())
			return
		}
		for _, f := range files {
			if sizes[f.name] == f.size {
				continue
			}
			sizes[f.name] = f.size
			s.sendLines(ctx, w, f, cur, read)
		}
		steps, _ := s.Meta.Steps(ctx, id)
		state := s.viewState(e, steps)
		state.Children = s.viewChildren(ctx, id)
		if e.Status == string(actors.StatusQueued) {
			var c CheckReport
			if v, found, _ := s.KV.Get(ctx, "check-run/"+id); found && json.Unmarshal([]byte(v), &c) == nil && strings.HasPrefix(c.Summary, "Queued —") {
				state.Queue = c.Summary
			}
		}
		st, _ := json.Marshal(state)
		if string(st) != lastState {
			lastState = string(st)
			fmt.Fprintf(w, "event: state\ndata: %s\n\n", st)
		}
		if actors.Status(e.Status).Terminal() {
			fmt.Fprintf(w, "event: end\ndata: %q\n\n", e.Status)
			return
		}
		if !canFlush || !s.Now().Before(deadline) {
			fmt.Fprint(w, "retry: 2000\n\n")
			return
		}
		flusher.Flush()
		select {
		case <-ctx.Done():
			return
		case <-time.After(viewerTick):
		}
	}
}

// readUpTo is how far one events response has read a log file: up to and including
// segment seg (its number), holding lines lines. A numbered segment is never
// rewritten once stored (agent/logship), so the next tick reads only the segments
// after it, not the file from its start again: a follower of a long chatty run costs
// each segment one read, not one per tick.
type readUpTo struct{ seg, lines int }

// sendLines writes the lines of f past cur[f.name] and moves the cursor; read says
// which of f's segments this response has already read whole. A file kept as one
// unnumbered object (the original's) is read whole each time it changes.
func (s *Server) sendLines(ctx context.Context, w io.Writer, f logFile, cur cursor, read map[string]readUpTo) {
	numbered := true
	for _, key := range f.segments {
		numbered = numbered && segNum(key) > 0
	}
	from := readUpTo{}
	if numbered {
		from = read[f.name]
	}
	n, advance := from.lines, numbered
	before, after := cur.idAround(f.name)
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	for _, key := range f.segments {
		num := segNum(key)
		if num <= from.seg && from.seg > 0 {
			continue
		}
		body, _, err := s.Blobs.Get(ctx, key)
		if err != nil { // pruned since the listing: skipped, and read again while listed
			advance = false
			continue
		}
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			n++
			if n <= cur[f.name] {
				continue
			}
			cur[f.name] = n
			b, _ := json.Marshal(renderRecord(f.name, sc.Bytes()))
			bw.WriteString("event: line\nid: ")
			bw.WriteString(before)
			bw.WriteString(strconv.Itoa(n))
			bw.WriteString(after)
			bw.WriteString("\ndata: ")
			bw.Write(b)
			bw.WriteString("\n\n")
		}
		body.Close()
		if advance = advance && sc.Err() == nil; advance {
			read[f.name] = readUpTo{seg: num, lines: n}
		}
	}
}

// renderRecord is one NDJSON record for the viewer (logRecord): HTML rendered by
// terminal-to-html, and the text for terminals with SGR colours kept, every other
// escape and control character removed.
func renderRecord(file string, line []byte) viewLine {
	v := logRecord(file, line)
	v.Text = safeTerminalText(v.Text)
	v.HTML = renderANSI(v.Text)
	return v
}

// safeTerminalText keeps printable text, tabs and SGR sequences (ESC [ … m) and drops
// every other escape and control character. terminal-to-html turns OSC 8 hyperlinks
// and OSC 1337/1339 into <a> and <img> elements: a log line must never create
// elements, so those (and cursor movement, which would rewrite earlier text) go.
func safeTerminalText(s string) string {
	if plainText(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0x1b && i+1 < len(s) {
			switch s[i+1] {
			case '[': // CSI: parameters, intermediates, one final byte
				j := i + 2
				for j < len(s) && s[j] >= 0x20 && s[j] <= 0x3f {
					j++
				}
				if j < len(s) && s[j] == 'm' && onlySGRParams(s[i+2:j]) {
					b.WriteString(s[i : j+1])
				}
				if j < len(s) {
					i = j
				} else {
					i = len(s)
				}
				continue
			case ']', 'P', '_', '^', 'X': // OSC, DCS, APC, PM, SOS: up to BEL or ST
				j := i + 2
				for j < len(s) && s[j] != 0x07 && !(s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\') {
					j++
				}
				if j < len(s) && s[j] == 0x1b {
					j++
				}
				i = j
				continue
			}
			i++ // a two-byte escape
			continue
		}
		if (c < 0x20 && c != '\t') || c == 0x7f {
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// plainText is s without any escape or control character but tabs: nothing for
// safeTerminalText to remove.
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func onlySGRParams(p string) bool {
	for i := 0; i < len(p); i++ {
		if (p[i] < '0' || p[i] > '9') && p[i] != ';' && p[i] != ':' {
			return false
		}
	}
	return true
}

// cursor is how many lines of each log file a stream has sent.
type cursor map[string]int

func (c cursor) String() string {
	v := url.Values{}
	for f, n := range c {
		v.Set(f, fmt.Sprint(n))
	}
	return v.Encode()
}

// idAround splits the event id (String) that c has once file's count is set: before
// + the count + after, so a stream writes one id per line without encoding the whole
// cursor each time (url.Values.Encode: keys escaped and sorted, joined by &).
func (c cursor) idAround(file string) (before, after string) {
	keys := make([]string, 0, len(c)+1)
	for k := range c {
		if k != file {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b, a strings.Builder
	for _, k := range keys {
		entry := url.QueryEscape(k) + "=" + strconv.Itoa(c[k])
		if k < file {
			b.WriteString(entry + "&")
		} else {
			a.WriteString("&" + entry)
		}
	}
	return b.String() + url.QueryEscape(file) + "=", a.String()
}

func parseCursor(s string) cursor {
	c := cursor{}
	v, _ := url.ParseQuery(s)
	for f := range v {
		var n int
		if _, err := fmt.Sscan(v.Get(f), &n); err == nil && n > 0 && validLogFile(f) {
			c[f] = n
		}
	}
	return c
}

// stripSGR removes the SGR sequences safeTerminalText kept.
func stripSGR(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := strings.IndexByte(s[i:], 'm')
			if j < 0 {
				break
			}
			i += j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
