package edge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	terminal "github.com/buildkite/terminal-to-html/v3"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// viewerStack is an edge serving one execution's log from blobs in memory.
type viewerStack struct {
	srv   *edge.Server
	meta  *memMeta
	blobs *countingBlobs
	id    string
}

// countingBlobs counts the reads of each key.
type countingBlobs struct {
	*memBlobs
	mu   sync.Mutex
	gets map[string]int
}

func (c *countingBlobs) Get(ctx context.Context, key string) (io.ReadCloser, edge.BlobMeta, error) {
	c.mu.Lock()
	c.gets[key]++
	c.mu.Unlock()
	return c.memBlobs.Get(ctx, key)
}

func (c *countingBlobs) reads(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[key]
}

func newViewerStack(t testing.TB, status string) *viewerStack {
	t.Helper()
	v := &viewerStack{meta: newMeta(), blobs: &countingBlobs{memBlobs: newBlobs(), gets: map[string]int{}}, id: "offload-test:view_er:0123456789ab"}
	v.srv = edge.New(edge.Deps{Config: edge.Config{HMACSecret: testSecret}, Runs: dsl.NewRegistry(), Meta: v.meta, KV: newKV(), Blobs: v.blobs})
	if _, err := v.meta.CreateExecution(context.Background(), edge.Execution{ID: v.id, Run: "offload-test", Status: status, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return v
}

// segment stores segment n of exec.ndjson holding lines from..to-1 (NDJSON stdout
// records of "line <i> …") and returns its key.
func (v *viewerStack) segment(n, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, `{"stream":"stdout","line":"line %d ok  \tgithub.com/acme/web/pkg%d\t0.%03ds"}`+"\n", i, i%97, i%1000)
	}
	key := fmt.Sprintf("logs/%s/exec.ndjson.%06d", v.id, n)
	v.blobs.put(key, b.String())
	return key
}

// events serves the execution's events stream into w.
func (v *viewerStack) events(ctx context.Context, w io.Writer) {
	u := "/logs/" + url.PathEscape(v.id) + "?format=events&t=" + edge.LogToken(edge.Config{HMACSecret: testSecret}, v.id)
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	v.srv.ServeHTTP(streamed{w, http.Header{}}, req)
}

// streamed is a ResponseWriter that flushes: what the handler writes goes to the
// writer as it comes.
type streamed struct {
	io.Writer
	h http.Header
}

func (s streamed) Header() http.Header { return s.h }
func (streamed) WriteHeader(int)       {}
func (streamed) Flush()                {}

// counted counts the bytes written to it.
type counted int64

func (c *counted) Write(p []byte) (int, error) { *c += counted(len(p)); return len(p), nil }

// BenchmarkViewerEvents is a follower (`flare run`, the viewer's page) reading the
// events stream of a finished execution whose log is 200,000 lines in 1 MiB segments:
// lines per second through the edge's rendering.
func BenchmarkViewerEvents(b *testing.B) {
	v := newViewerStack(b, "success")
	const lines, perSegment = 200_000, 16_000
	for i := 0; i*perSegment < lines; i++ {
		v.segment(i+1, i*perSegment, min((i+1)*perSegment, lines))
	}
	var out counted
	for b.Loop() {
		out = 0
		v.events(context.Background(), &out)
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(out)/lines, "B/line")
}

// TestPlainRecordReadsAsTheDecoderDoes: the viewer reads stdout and stderr records
// without the JSON decoder when it can; whatever the line (records the agent wrote,
// with every kind of character, and the same records cut or with bytes changed), it
// must read what the decoder reads.
func TestPlainRecordReadsAsTheDecoderDoes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", " ", "\t", "\n", "\r", "\x00", "\x1b[31m", "\"", "\\", "/", "<", "&", "é", "日", "\u2028", "\xff", "\x7f", "}", "\\u0041", "\\t", "\\\""}
	fast := 0
	for i := range 50_000 {
		var s strings.Builder
		for range rng.IntN(12) {
			s.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		stream := "stdout"
		if i%3 == 0 {
			stream = "stderr"
		}
		rec, _ := json.Marshal(struct { // as agent/logship writes it
			Stream string `json:"stream"`
			Line   string `json:"line"`
		}{stream, s.String()})
		line := string(rec)
		switch i % 4 {
		case 1: // the raw text, unescaped, where a hostile agent could put it
			line = `{"stream":"` + stream + `","line":"` + s.String() + `"}`
		case 2: // cut
			line = line[:rng.IntN(len(line)+1)]
		case 3: // a byte changed
			b := []byte(line)
			b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))][0]
			line = string(b)
		}
		kind, text := edge.ViewRecord([]byte(line))
		wantKind, wantText := edge.DecodeRecord([]byte(line))
		if kind != wantKind || text != wantText {
			t.Fatalf("record %q: read as %s %q, the decoder reads %s %q", line, kind, text, wantKind, wantText)
		}
		if _, ok := edge.PlainRecord([]byte(line)); ok {
			fast++
		}
	}
	if fast < 5_000 { // the rest have a \u escape, or are cut or changed
		t.Fatalf("only %d of 50,000 records took the fast path", fast)
	}
	if text, ok := edge.PlainRecord([]byte(`{"stream":"stdout","line":"ok  \tgithub.com/acme/web\t0.012s"}`)); !ok || text != "ok  \tgithub.com/acme/web\t0.012s" {
		t.Fatalf("a go test line: %q %v", text, ok)
	}
}

// TestPlainHTMLIsWhatTerminalToHTMLRenders: the viewer renders a printable-ASCII line
// itself instead of through terminal-to-html; for any such line both must agree
// (escaping, the trailing blanks the screen drops), up to a 66,000-character line.
func TestPlainHTMLIsWhatTerminalToHTMLRenders(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	special := " \t&'<>\"/ab \t"
	checked := 0
	for i := range 100_000 {
		n := rng.IntN(14)
		if i%5000 == 0 {
			n = 66_000
		}
		b := make([]byte, n)
		for j := range b {
			if rng.IntN(2) == 0 {
				b[j] = special[rng.IntN(len(special))]
			} else {
				b[j] = byte(0x20 + rng.IntN(0x7f-0x20))
			}
		}
		h, ok := edge.PlainHTML(string(b))
		if !ok {
			continue
		}
		checked++
		if want := strings.TrimSuffix(terminal.Render(b), "\n"); h != want {
			t.Fatalf("%q: rendered %q, terminal-to-html %q", b[:min(len(b), 80)], h[:min(len(h), 80)], want[:min(len(want), 80)])
		}
	}
	for _, s := range []string{"", " ", "\t \t", "é", "\x1b[31mred\x1b[0m"} {
		if _, ok := edge.PlainHTML(s); ok {
			t.Fatalf("%q took the plain path", s)
		}
	}
	if checked < 50_000 {
		t.Fatalf("only %d lines checked", checked)
	}
}

// TestEventIDsAreTheCursorsEncoding: a stream writes each line's id from two parts
// computed once per file; it must be the cursor's own encoding, which a reconnecting
// EventSource sends back as Last-Event-ID.
func TestEventIDsAreTheCursorsEncoding(t *testing.T) {
	for _, c := range []map[string]int{
		{},
		{"exec.ndjson": 7},
		{"exec-2.ndjson": 3, "exec.ndjson": 9, "step build.ndjson": 1},
		{"a&b=.ndjson": 2, "zz.ndjson": 5},
	} {
		for _, file := range []string{"exec.ndjson", "exec-10.ndjson", "a&b=.ndjson", "zzz.ndjson"} {
			copied := map[string]int{}
			for k, v := range c {
				copied[k] = v
			}
			around, whole := edge.CursorIDs(copied, file, 42)
			if around != whole {
				t.Fatalf("cursor %v, file %s: id %q, the cursor encodes %q", c, file, around, whole)
			}
		}
	}
}

// TestALiveStreamReadsEachSegmentOnce: a follower of a running execution whose log
// grows by a segment at a time gets every line once, in order, and the edge reads
// each segment once. Before, each tick that saw the log grow read the whole file from
// its first segment again: a follower of a long chatty run cost reads and CPU growing
// with the square of its log (this test failed with segment 1 read 3 times).
func TestALiveStreamReadsEachSegmentOnce(t *testing.T) {
	v := newViewerStack(t, "running")
	keys := []string{v.segment(1, 0, 100)}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		v.events(ctx, pw)
		pw.Close()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := 0 // the line expected next
	readUntil := func(n int) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for next < n {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the stream ended at line %d", next)
				}
				if d, found := strings.CutPrefix(l, "data: "); found && strings.Contains(d, `"k":"out"`) {
					if want := fmt.Sprintf(`"t":"line %d ok`, next); !strings.Contains(d, want) {
						t.Fatalf("line event %s, want line %d", d, next)
					}
					next++
				}
			case <-deadline:
				t.Fatalf("waiting for line %d", n)
			}
		}
	}
	readUntil(100)
	keys = append(keys, v.segment(2, 100, 200))
	readUntil(200)
	keys = append(keys, v.segment(3, 200, 300))
	readUntil(300)
	if err := v.meta.UpdateExecution(ctx, edge.Execution{ID: v.id, Status: "success"}); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"k":"out"`) {
			t.Fatalf("a line after the last: %s", l)
		}
	}
	for _, k := range keys {
		if n := v.blobs.reads(k); n != 1 {
			t.Fatalf("%s read %d times by one follower", k, n)
		}
	}
}
