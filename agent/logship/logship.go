// Package logship writes a command's output as an NDJSON log file in object storage,
// shipped in numbered segments so the log can be read while the command still runs.
//
// # Key scheme
//
// A log file has a logical key such as logs/<exec>/exec.ndjson (the first command of
// an execution), logs/<exec>/exec-2.ndjson (the second), … It is stored as segment
// objects whose keys are the logical key, a dot, and a six-digit sequence number from
// 000001:
//
//	logs/<exec>/exec.ndjson.000001
//	logs/<exec>/exec.ndjson.000002
//	logs/<exec>/exec-2.ndjson.000001
//
// A reader lists the prefix, groups segment keys by their logical key (the key minus
// the last ".NNNNNN"), and concatenates each group's segments in key order. Every
// segment holds whole lines. A segment is written about every second while output
// flows (FlushEvery), or as soon as SegmentBytes are buffered; no empty segments are
// written. The last record of a finished file has stream "exit".
//
// One segment is stored at a time, in order. While its put is in flight the output
// gathers into the next segment, up to MaxBuffered: a store far away (R2 from a
// Container, tens of milliseconds a put) gets fewer, larger segments instead of
// holding a chatty command to one 64 KiB segment per round trip (0.84 MB/s at 60 ms
// when segments were cut at 64 KiB and queued four deep; BENCHMARKS.md).
//
// Records, one JSON object per line:
//
//	{"stream":"meta","command":"pnpm test"}
//	{"stream":"stdout","line":"…"}
//	{"stream":"stderr","line":"…"}
//	{"stream":"exit","exitCode":0,"durationMs":1234}                (finished)
//	{"stream":"exit","exitCode":-1,"durationMs":600000,"timedOut":true}
//	{"stream":"gap","line":"[flare: …]","lostSegments":1,"lostBytes":65536}   (see below)
//	{"stream":"truncated","line":"[flare: …]"}                                (see below)
//
// # Never a silent gap
//
// A segment's put is retried with backoff for up to Options.GiveUp (meanwhile the
// next segment fills up to MaxBuffered; past it writers block, so the command waits
// rather than the agent buffering without bound). A segment that still fails is
// lost: the next segment that is stored starts with a "gap" record naming what was
// lost, and Close returns a *LostError (the agent fails the run with StorageFull).
// Readers show the record's line like any other, so the gap is visible where it
// happened.
//
// # Per-run quota
//
// A Quota is the byte budget of a run's command output, shared by its log files (an
// attempt starts it at what earlier attempts stored). Once it is spent, one
// "truncated" record says so and later stdout/stderr lines are not stored (the
// command keeps running; its tails still reach the journal); meta, exit and marker
// records are not counted, so every file still ends with its exit.
package logship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Shipping defaults.
const (
	FlushEvery   = time.Second
	SegmentBytes = 64 << 10
	// MaxBuffered is how much output gathers while a segment's put is in flight before
	// writers block: a segment holds at most this plus one record, and a file holds at
	// most two such segments in memory (one being stored, the next).
	MaxBuffered = 1 << 20
	// MaxLine is the longest line in one record; longer lines are split.
	MaxLine = 64 << 10
	// SegmentDigits is the width of the sequence number in a segment key.
	SegmentDigits = 6
	// DefaultGiveUp is how long one segment's put is retried before it is lost.
	DefaultGiveUp = 2 * time.Minute
	// DefaultQuota is a run's log budget when the edge sets none.
	DefaultQuota = 64 << 20
)

// Options tune a File; the zero value takes the defaults.
type Options struct {
	Quota   *Quota        // the run's budget, shared by its files; nil: unbounded
	GiveUp  time.Duration // retry one segment's put this long (default DefaultGiveUp)
	Backoff time.Duration // first retry delay, doubled up to 10 s (default 250 ms)
}

// Quota is a run's log budget in bytes of stdout/stderr records.
type Quota struct {
	limit int64
	used  atomic.Int64
}

// NewQuota is a budget of limit bytes of which used are already spent (by earlier
// attempts); limit <= 0 means DefaultQuota.
func NewQuota(limit, used int64) *Quota {
	if limit <= 0 {
		limit = DefaultQuota
	}
	q := &Quota{limit: limit}
	q.used.Store(used)
	return q
}

// Limit is the budget in bytes.
func (q *Quota) Limit() int64 { return q.limit }

// take spends n bytes if they fit.
func (q *Quota) take(n int64) bool {
	for {
		u := q.used.Load()
		if u+n > q.limit {
			return false
		}
		if q.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// LostError says segments of a log file could not be stored.
type LostError struct {
	Key      string
	Segments int
	Bytes    int64
	Err      error // the last put's error
}

func (e *LostError) Error() string {
	return fmt.Sprintf("%s: %d segment(s), %d bytes not stored: %v", e.Key, e.Segments, e.Bytes, e.Err)
}

func (e *LostError) Unwrap() error { return e.Err }

// ErrRefused marks a Put the store refused for good (a 4xx such as 403 AccessDenied
// for an ended execution): it is not retried.
var ErrRefused = errors.New("refused by the store")

// Sink stores objects: S3 in production and locally (see S3Sink).
type Sink interface {
	Put(ctx context.Context, key string, body []byte) error
}

// Lister lists keys under a prefix; a Sink that can list lets the agent number its log
// files after those an earlier attempt wrote.
type Lister interface {
	List(ctx context.Context, prefix string) ([]string, error)
}

// SegmentKey is the key of segment seq (from 1) of the log file key.
func SegmentKey(key string, seq int) string {
	return fmt.Sprintf("%s.%0*d", key, SegmentDigits, seq)
}

var segmentSuffix = regexp.MustCompile(`\.(\d{6,})$`)

// SplitSegmentKey returns the log file key and sequence number of a segment key.
func SplitSegmentKey(segment string) (key string, seq int, ok bool) {
	m := segmentSuffix.FindStringSubmatchIndex(segment)
	if m == nil {
		return "", 0, false
	}
	n, err := strconv.Atoi(segment[m[2]:m[3]])
	if err != nil {
		return "", 0, false
	}
	return segment[:m[0]], n, true
}

// File is one log file being written. Its methods are safe for concurrent use.
type File struct {
	sink Sink
	key  string

	opt Options
	mu  sync.Mutex
	// cond (on mu) wakes the uploader when there is a segment to take, and writers
	// waiting for room when it has taken one or the file is closed.
	cond    sync.Cond
	buf     bytes.Buffer // the next segment, gathering
	seq     int
	due     bool // a tick passed since the last cut: the buffer goes however small
	closed  bool
	stop    chan struct{}
	flusher sync.WaitGroup
	upload  sync.WaitGroup
	ctx     context.Context

	truncated bool  // the quota ran out: stdout/stderr are dropped (under mu)
	dropped   int64 // bytes dropped since (under mu)

	// The uploader's state, under its own lock: the uploader must never need mu while
	// a put is in flight, or writers could not gather the next segment meanwhile.
	umu        sync.Mutex
	lost       LostError // every segment lost so far
	unreported int       // lost segments no stored segment has reported yet
	unrepBytes int64
	failing    bool // the last put gave up: the next one tries once
}

type segment struct {
	key  string
	body []byte
}

// Open starts a log file under key. Segments are uploaded in order by one goroutine;
// when uploads fall behind by MaxBuffered, writers block (the command's pipes fill, so
// it waits rather than the agent buffering without bound). ctx bounds the uploads.
func Open(ctx context.Context, sink Sink, key string, opt Options) *File {
	if opt.GiveUp <= 0 {
		opt.GiveUp = DefaultGiveUp
	}
	if opt.Backoff <= 0 {
		opt.Backoff = 250 * time.Millisecond
	}
	f := &File{sink: sink, key: key, opt: opt, stop: make(chan struct{}), ctx: ctx}
	f.cond.L = &f.mu
	f.lost.Key = key
	f.upload.Add(1)
	go f.uploader()
	f.flusher.Add(1)
	go f.ticker()
	return f
}

// Key is the logical key of the file.
func (f *File) Key() string { return f.key }

// Meta records the command.
func (f *File) Meta(command string) {
	f.write(struct {
		Stream  string `json:"stream"`
		Command string `json:"command"`
	}{"meta", command})
}

// Line records one line of stdout or stderr (without its newline). Lines longer than
// MaxLine are split into several records.
func (f *File) Line(stream, line string) {
	for len(line) > MaxLine {
		cut := MaxLine
		for cut > 0 && !isRuneStart(line[cut]) {
			cut--
		}
		if cut == 0 {
			cut = MaxLine
		}
		f.line(stream, line[:cut])
		line = line[cut:]
	}
	f.line(stream, line)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func (f *File) line(stream, line string) {
	b, _ := json.Marshal(struct {
		Stream string `json:"stream"`
		Line   string `json:"line"`
	}{stream, line})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if q := f.opt.Quota; q != nil {
		if f.truncated || !q.take(int64(len(b))+1) {
			if !f.truncated {
				f.truncated = true
				f.appendLocked(marker("truncated", fmt.Sprintf("[flare: this run's log quota of %s is used up: later output of this command is not stored]", size(q.limit))))
			}
			f.dropped += int64(len(b)) + 1
			return
		}
	}
	f.appendLocked(b)
}

func marker(stream, line string) []byte {
	b, _ := json.Marshal(struct {
		Stream string `json:"stream"`
		Line   string `json:"line"`
	}{stream, line})
	return b
}

func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// Exit records how the command ended (after how much output the quota dropped).
func (f *File) Exit(exitCode int, duration time.Duration, timedOut bool) {
	f.mu.Lock()
	if f.dropped > 0 && !f.closed {
		f.appendLocked(marker("truncated", fmt.Sprintf("[flare: %d bytes of output were not stored (log quota)]", f.dropped)))
	}
	f.mu.Unlock()
	f.write(struct {
		Stream     string `json:"stream"`
		ExitCode   int    `json:"exitCode"`
		DurationMs int64  `json:"durationMs"`
		TimedOut   bool   `json:"timedOut,omitempty"`
	}{"exit", exitCode, duration.Milliseconds(), timedOut})
}

func (f *File) write(rec any) {
	b, err := json.Marshal(rec) // plain strings always marshal; bad UTF-8 becomes U+FFFD
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.appendLocked(b)
}

// appendLocked adds one record to the next segment, first waiting (f.mu released)
// while MaxBuffered are already gathered behind a put in flight. A record whose file
// was closed meanwhile is dropped, as later writes are.
func (f *File) appendLocked(b []byte) {
	for f.buf.Len() >= MaxBuffered && !f.closed {
		f.cond.Wait()
	}
	if f.closed {
		return
	}
	f.buf.Write(b)
	f.buf.WriteByte('\n')
	if f.buf.Len() >= SegmentBytes {
		f.cond.Broadcast()
	}
}

func (f *File) ticker() {
	defer f.flusher.Done()
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.mu.Lock()
			if f.buf.Len() > 0 {
				f.due = true
				f.cond.Broadcast()
			}
			f.mu.Unlock()
		}
	}
}

// uploader stores the segments in order: it takes the whole buffer as the next
// segment once SegmentBytes are gathered, a tick has passed, or the file is closed,
// and ships it without f.mu, so the output gathers meanwhile. It ends once the file
// is closed and nothing is left.
func (f *File) uploader() {
	defer f.upload.Done()
	for {
		f.mu.Lock()
		for !f.closed && f.buf.Len() < SegmentBytes && (!f.due || f.buf.Len() == 0) {
			f.cond.Wait()
		}
		if f.buf.Len() == 0 {
			f.mu.Unlock()
			return
		}
		f.seq++
		s := segment{key: SegmentKey(f.key, f.seq), body: bytes.Clone(f.buf.Bytes())}
		f.buf.Reset()
		f.due = false
		f.cond.Broadcast() // writers waiting for room
		f.mu.Unlock()
		f.ship(s)
	}
}

// ship stores one segment, first reporting any segments lost before it with a gap
// record at its head, so the stored log shows where output is missing.
func (f *File) ship(s segment) {
	f.umu.Lock()
	body := s.body
	if f.unreported > 0 {
		gap, _ := json.Marshal(struct {
			Stream   string `json:"stream"`
			Line     string `json:"line"`
			Segments int    `json:"lostSegments"`
			Bytes    int64  `json:"lostBytes"`
		}{"gap", fmt.Sprintf("[flare: %d bytes of this log (%d segment(s)) could not be stored and are missing here: %v]",
			f.unrepBytes, f.unreported, f.lost.Err), f.unreported, f.unrepBytes})
		body = append(append(gap, '\n'), s.body...)
	}
	tries := f.opt.GiveUp
	if f.failing {
		tries = 0 // the store already refused one segment for GiveUp: try each once until one lands
	}
	f.umu.Unlock()

	err := f.put(s.key, body, tries)
	f.umu.Lock()
	defer f.umu.Unlock()
	if err != nil {
		f.failing = true
		f.lost.Err = err
		if len(s.body) > 0 { // not Close's gap-only segment
			f.lost.Segments++
			f.lost.Bytes += int64(len(s.body))
			f.unreported++
			f.unrepBytes += int64(len(s.body))
		}
		return
	}
	f.failing, f.unreported, f.unrepBytes = false, 0, 0
}

// put stores one object, retrying with backoff (Options.Backoff doubling to 10 s)
// for up to giveUp; giveUp 0 tries once.
func (f *File) put(key string, body []byte, giveUp time.Duration) error {
	deadline := time.Now().Add(giveUp)
	wait := f.opt.Backoff
	for {
		err := f.sink.Put(f.ctx, key, body)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrRefused) || time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("put %s: %w", key, err)
		}
		select {
		case <-f.ctx.Done():
			return fmt.Errorf("put %s: %w", key, errors.Join(err, f.ctx.Err()))
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// Close writes what is buffered and waits for every segment to be stored. When
// segments were lost it returns a *LostError; if no later segment carried their gap
// record, Close stores one more segment with it (tried once). Later writes are
// dropped.
func (f *File) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return f.firstErr()
	}
	f.closed = true
	f.cond.Broadcast() // the uploader takes what is left; waiting writers drop theirs
	f.mu.Unlock()
	close(f.stop)
	f.flusher.Wait()
	f.upload.Wait()
	f.umu.Lock()
	gap := f.unreported > 0
	f.umu.Unlock()
	if gap {
		f.mu.Lock()
		f.seq++
		s := segment{key: SegmentKey(f.key, f.seq)}
		f.mu.Unlock()
		f.ship(s)
	}
	return f.firstErr()
}

func (f *File) firstErr() error {
	f.umu.Lock()
	defer f.umu.Unlock()
	if f.lost.Segments == 0 {
		return nil
	}
	e := f.lost
	return &e
}

// Segments is how many segments have been cut so far.
func (f *File) Segments() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

// ExecName is the file name of the n-th command log of an execution: exec.ndjson for
// the first, exec-<n>.ndjson after.
func ExecName(n int) string {
	if n <= 1 {
		return "exec.ndjson"
	}
	return "exec-" + strconv.Itoa(n) + ".ndjson"
}

var execFile = regexp.MustCompile(`^exec(?:-(\d+))?\.ndjson$`)

// LastExec returns the highest command log number among segment keys under prefix
// (0 when there is none), so a new attempt numbers its logs after an earlier one's.
func LastExec(prefix string, keys []string) int {
	last := 0
	for _, k := range keys {
		file, _, ok := SplitSegmentKey(k)
		if !ok {
			continue
		}
		m := execFile.FindStringSubmatch(strings.TrimPrefix(file, prefix))
		if m == nil {
			continue
		}
		n := 1
		if m[1] != "" {
			n, _ = strconv.Atoi(m[1])
		}
		last = max(last, n)
	}
	return last
}
