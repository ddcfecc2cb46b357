package logship_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/logship"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

func sink(t testing.TB, st *s3test.Store, exec string) *logship.S3Sink {
	t.Helper()
	id, secret := st.Credential(t, exec, "acme/web")
	s, err := logship.NewS3Sink(logship.S3Config{Endpoint: st.URL, Bucket: st.Bucket, AccessKeyID: id, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// read concatenates a log file's segments as a reader of the scheme would.
func read(t *testing.T, st *s3test.Store, key string) []map[string]any {
	t.Helper()
	var body strings.Builder
	last := 0
	for _, k := range st.Keys(t, key+".") {
		file, seq, ok := logship.SplitSegmentKey(k)
		if !ok || file != key {
			continue
		}
		if seq != last+1 {
			t.Fatalf("segment %d follows %d", seq, last)
		}
		last = seq
		seg := st.Get(t, k)
		if !strings.HasSuffix(seg, "\n") {
			t.Fatalf("segment %s does not end with a whole line", k)
		}
		body.WriteString(seg)
	}
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(body.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

func TestLogIsReadableWhileTheCommandRuns(t *testing.T) {
	st := s3test.Start(t)
	s := sink(t, st, "ex1")
	key := "logs/ex1/" + logship.ExecName(1)
	f := logship.Open(context.Background(), s, key, logship.Options{})
	f.Meta("make test")
	f.Line("stdout", "building")
	f.Line("stderr", "warning: x")

	// Within about a second the first lines are stored, before Close.
	deadline := time.Now().Add(5 * time.Second)
	for len(st.Keys(t, key+".")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no segment shipped while the file is open")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if recs := read(t, st, key); len(recs) != 3 || recs[0]["command"] != "make test" {
		t.Fatalf("early read: %v", recs)
	}

	f.Line("stdout", "done")
	f.Exit(0, 1500*time.Millisecond, false)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	recs := read(t, st, key)
	want := []string{"meta", "stdout", "stderr", "stdout", "exit"}
	var got []string
	for _, r := range recs {
		got = append(got, r["stream"].(string))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("streams %v, want %v", got, want)
	}
	if recs[4]["exitCode"] != float64(0) || recs[4]["durationMs"] != float64(1500) {
		t.Fatalf("exit record %v", recs[4])
	}
}

func TestBigOutputIsCutIntoSegmentsOfWholeLines(t *testing.T) {
	st := s3test.Start(t)
	s := sink(t, st, "ex2")
	key := "logs/ex2/" + logship.ExecName(2)
	f := logship.Open(context.Background(), s, key, logship.Options{})
	line := strings.Repeat("x", 1000)
	for i := 0; i < 300; i++ {
		f.Line("stdout", line)
	}
	f.Line("stdout", strings.Repeat("é", logship.MaxLine)) // one line over MaxLine bytes
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f.Segments() < 2 {
		t.Fatalf("%d segments for ~430 KiB", f.Segments())
	}
	for _, k := range st.Keys(t, key+".") {
		if n := len(st.Get(t, k)); n > logship.MaxBuffered+2*logship.MaxLine {
			t.Fatalf("segment %s holds %d bytes, more than MaxBuffered and a record", k, n)
		}
	}
	recs := read(t, st, key)
	if len(recs) != 302 {
		t.Fatalf("%d records, want 302 (the long line split in two)", len(recs))
	}
	if got := recs[300]["line"].(string) + recs[301]["line"].(string); got != strings.Repeat("é", logship.MaxLine) {
		t.Fatal("long line was not split at a rune boundary")
	}
}

func TestAnotherExecutionsPrefixIsRefused(t *testing.T) {
	st := s3test.Start(t)
	s := sink(t, st, "ex3")
	f := logship.Open(context.Background(), s, "logs/other/exec.ndjson", logship.Options{})
	f.Line("stdout", "x")
	if err := f.Close(); err == nil {
		t.Fatal("writing outside the credential's grants succeeded")
	}
}

func TestLastExecFindsEarlierAttemptsLogs(t *testing.T) {
	keys := []string{
		"logs/e/exec.ndjson.000001", "logs/e/exec-2.ndjson.000001", "logs/e/exec-2.ndjson.000002",
		"logs/e/exec-10.ndjson.000001", "logs/e/exec-step.ndjson.000001", "logs/e/other.txt",
	}
	if got := logship.LastExec("logs/e/", keys); got != 10 {
		t.Fatalf("LastExec = %d, want 10", got)
	}
	if got := logship.LastExec("logs/e/", nil); got != 0 {
		t.Fatalf("LastExec(empty) = %d", got)
	}
	if logship.ExecName(1) != "exec.ndjson" || logship.ExecName(3) != "exec-3.ndjson" {
		t.Fatal("ExecName")
	}
	if k, n, ok := logship.SplitSegmentKey(logship.SegmentKey("logs/e/exec.ndjson", 12)); !ok || k != "logs/e/exec.ndjson" || n != 12 {
		t.Fatalf("SplitSegmentKey = %q %d %v", k, n, ok)
	}
}

// gated is the real S3 sink whose first put waits until release is closed: a store
// far away, with the first segment's put in flight.
type gated struct {
	logship.Sink
	first   sync.Once
	started chan struct{}
	release chan struct{}
}

func (g *gated) Put(ctx context.Context, key string, body []byte) error {
	g.first.Do(func() {
		close(g.started)
		<-g.release
	})
	return g.Sink.Put(ctx, key, body)
}

// TestOutputGathersBehindASlowPutUpToTheBound: while the first segment's put is in
// flight, the command goes on printing into the next segment until MaxBuffered are
// gathered, and only then waits; the gathered output is stored as one segment. Before,
// segments were cut at 64 KiB and queued four deep, so the command waited after
// ~320 KiB and a distant store held it to one 64 KiB segment per round trip (this test
// failed waiting for the writer to get past 1 MiB).
func TestOutputGathersBehindASlowPutUpToTheBound(t *testing.T) {
	st := s3test.Start(t)
	g := &gated{Sink: sink(t, st, "ex4"), started: make(chan struct{}), release: make(chan struct{})}
	key := "logs/ex4/exec.ndjson"
	f := logship.Open(context.Background(), g, key, logship.Options{})
	line := strings.Repeat("g", 1000)
	record := len(`{"stream":"stdout","line":""}`) + len(line) + 1 // 1,030 bytes with its newline
	for i := 0; i < logship.SegmentBytes/record+1; i++ {
		f.Line("stdout", line)
	}
	<-g.started // segment 1 is being stored

	var written atomic.Int64
	done := make(chan struct{})
	const total = 3000
	go func() {
		defer close(done)
		for i := 0; i < total; i++ {
			f.Line("stdout", line)
			written.Add(int64(record))
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for written.Load() < int64(logship.MaxBuffered-record) {
		if time.Now().After(deadline) {
			t.Fatalf("the writer stopped after %d bytes behind a put in flight, want MaxBuffered (%d)", written.Load(), logship.MaxBuffered)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the writer is now held: it must not get further
	if n := written.Load(); n > int64(logship.MaxBuffered+record) {
		t.Fatalf("the writer got %d bytes ahead of a put in flight, more than MaxBuffered (%d)", n, logship.MaxBuffered)
	}
	close(g.release)
	<-done
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	keys := st.Keys(t, key+".")
	if n := len(st.Get(t, keys[1])); n < logship.MaxBuffered-record {
		t.Fatalf("segment 2 holds %d bytes, want what gathered behind segment 1 (~%d)", n, logship.MaxBuffered)
	}
	if recs := read(t, st, key); count(recs, "stdout") != logship.SegmentBytes/record+1+total {
		t.Fatalf("%d stdout records stored, want %d", count(recs, "stdout"), logship.SegmentBytes/record+1+total)
	}
}
