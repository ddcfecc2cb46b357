package logship_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/logship"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

// faulty wraps the real S3 sink and fails the puts fail says to fail, as a full disk
// behind the store would (a 5xx), counting every try.
type faulty struct {
	logship.Sink
	mu    sync.Mutex
	tries map[string]int
	fail  func(key string, try int) bool
}

func (f *faulty) Put(ctx context.Context, key string, body []byte) error {
	f.mu.Lock()
	if f.tries == nil {
		f.tries = map[string]int{}
	}
	f.tries[key]++
	n := f.tries[key]
	f.mu.Unlock()
	if f.fail(key, n) {
		return errors.New("507 InsufficientStorage: no space left on device")
	}
	return f.Sink.Put(ctx, key, body)
}

// records reads a log file's stored segments in order, holes allowed.
func records(t *testing.T, st *s3test.Store, key string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, k := range st.Keys(t, key+".") {
		for _, line := range strings.Split(strings.TrimSuffix(st.Get(t, k), "\n"), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%s: line %q: %v", k, line, err)
			}
			recs = append(recs, m)
		}
	}
	return recs
}

func count(recs []map[string]any, stream string) int {
	n := 0
	for _, r := range recs {
		if r["stream"] == stream {
			n++
		}
	}
	return n
}

// TestTransientOutageIsRetriedNotDropped: the store refuses every segment's first five
// puts. With backoff the log arrives whole. The shipper gave up after three tries
// before, dropping every segment (this test failed).
func TestTransientOutageIsRetriedNotDropped(t *testing.T) {
	st := s3test.Start(t)
	fs := &faulty{Sink: sink(t, st, "ft1"), fail: func(_ string, try int) bool { return try <= 5 }}
	key := "logs/ft1/exec.ndjson"
	f := logship.Open(context.Background(), fs, key, logship.Options{Backoff: time.Millisecond, GiveUp: time.Minute})
	for i := 0; i < 200; i++ {
		f.Line("stdout", strings.Repeat("y", 1000)) // ~3 segments
	}
	f.Exit(0, time.Second, false)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	recs := read(t, st, key)
	if count(recs, "stdout") != 200 || count(recs, "gap") != 0 || recs[len(recs)-1]["stream"] != "exit" {
		t.Fatalf("%d stdout records, %d gaps", count(recs, "stdout"), count(recs, "gap"))
	}
}

// TestLostSegmentLeavesAGapMarker: the second segment can never be stored. The next
// stored segment starts with a gap record saying how much is missing, and Close
// reports the loss. Before, the log was served with a silent hole.
func TestLostSegmentLeavesAGapMarker(t *testing.T) {
	st := s3test.Start(t)
	key := "logs/ft2/exec.ndjson"
	fs := &faulty{Sink: sink(t, st, "ft2"), fail: func(k string, _ int) bool { return k == logship.SegmentKey(key, 2) }}
	f := logship.Open(context.Background(), fs, key, logship.Options{Backoff: time.Millisecond, GiveUp: 50 * time.Millisecond})
	// ~3 MB: segment 2 gathers what is printed while segment 1 is stored, and later
	// segments what is printed while segment 2 is retried (up to MaxBuffered each).
	for i := 0; i < 3000; i++ {
		f.Line("stdout", strings.Repeat("z", 1000))
	}
	f.Exit(0, time.Second, false)
	err := f.Close()
	var lost *logship.LostError
	if !errors.As(err, &lost) || lost.Segments != 1 || lost.Bytes < 60<<10 {
		t.Fatalf("Close = %v, want one lost segment", err)
	}
	recs := records(t, st, key)
	gaps := 0
	for i, r := range recs {
		if r["stream"] != "gap" {
			continue
		}
		gaps++
		if r["lostSegments"] != 1.0 || !strings.Contains(r["line"].(string), "could not be stored") || i == 0 {
			t.Fatalf("gap record %v at %d", r, i)
		}
	}
	if gaps != 1 || recs[len(recs)-1]["stream"] != "exit" {
		t.Fatalf("%d gap records; last %v", gaps, recs[len(recs)-1])
	}
	if fs.tries[logship.SegmentKey(key, 3)] != 1 {
		t.Fatalf("segment 3 took %d tries", fs.tries[logship.SegmentKey(key, 3)])
	}
}

// TestLostTailIsMarkedAtClose: the last segment is lost; Close stores one more
// segment holding only the gap record, so the end of the log is not silently cut.
func TestLostTailIsMarkedAtClose(t *testing.T) {
	st := s3test.Start(t)
	key := "logs/ft3/exec.ndjson"
	fs := &faulty{Sink: sink(t, st, "ft3"), fail: func(k string, _ int) bool { return k == logship.SegmentKey(key, 1) }}
	f := logship.Open(context.Background(), fs, key, logship.Options{Backoff: time.Millisecond, GiveUp: 20 * time.Millisecond})
	f.Line("stdout", "only line")
	f.Exit(1, time.Second, false)
	if err := f.Close(); err == nil {
		t.Fatal("Close reported no loss")
	}
	recs := records(t, st, key)
	if len(recs) != 1 || recs[0]["stream"] != "gap" {
		t.Fatalf("stored %v, want the gap record alone", recs)
	}
}

// TestQuotaTruncatesTheRunsLogWithAMarker: two files share a 10 KiB quota. Past it
// stdout is not stored, one marker says why, the exit record still ends each file,
// and what was dropped is counted. Without the quota every line was stored.
func TestQuotaTruncatesTheRunsLogWithAMarker(t *testing.T) {
	st := s3test.Start(t)
	s := sink(t, st, "ft4")
	q := logship.NewQuota(10<<10, 2<<10) // an earlier attempt stored 2 KiB
	stored := 0
	for _, name := range []string{"exec.ndjson", "exec-2.ndjson"} {
		key := "logs/ft4/" + name
		f := logship.Open(context.Background(), s, key, logship.Options{Quota: q})
		f.Meta("yes")
		for i := 0; i < 100; i++ {
			f.Line("stdout", strings.Repeat("q", 100))
		}
		f.Exit(0, time.Second, false)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		recs := read(t, st, key)
		stored += count(recs, "stdout")
		if count(recs, "truncated") != 2 || recs[len(recs)-1]["stream"] != "exit" {
			t.Fatalf("%s: %d truncation markers, last %v", name, count(recs, "truncated"), recs[len(recs)-1])
		}
		last := recs[len(recs)-2]["line"].(string)
		if !strings.Contains(last, "bytes of output were not stored") {
			t.Fatalf("%s: no dropped count: %q", name, last)
		}
	}
	// 8 KiB left, ~117 bytes per record: about 70 lines of the 200.
	if stored < 60 || stored > 70 {
		t.Fatalf("%d stdout records stored under an 8 KiB budget", stored)
	}
}

// TestRefusingStoreDoesNotWedgeTheWriter: every put fails while output keeps coming,
// so the queue is full and the writer waits for room holding the file's lock. The
// uploader must record its failures without that lock, or neither moves again (the
// command's pipe fills and it hangs: seen with a full disk).
func TestRefusingStoreDoesNotWedgeTheWriter(t *testing.T) {
	st := s3test.Start(t)
	fs := &faulty{Sink: sink(t, st, "ft5"), fail: func(string, int) bool { return true }}
	f := logship.Open(context.Background(), fs, "logs/ft5/exec.ndjson", logship.Options{Backoff: time.Millisecond, GiveUp: 20 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 3000; i++ { // ~3 MB: more than MaxBuffered behind a refused put
			f.Line("stdout", strings.Repeat("w", 1000))
		}
		f.Exit(0, time.Second, false)
		done <- f.Close()
	}()
	select {
	case err := <-done:
		var lost *logship.LostError
		if !errors.As(err, &lost) || lost.Bytes < 3000*1000 {
			t.Fatalf("Close = %v, want every line's bytes reported lost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writing to a refusing store wedged")
	}
}
