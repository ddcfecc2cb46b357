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
// Records, one JSON object per line:
//
//	{"stream":"meta","command":"pnpm test"}
//	{"stream":"stdout","line":"…"}
//	{"stream":"stderr","line":"…"}
//	{"stream":"exit","exitCode":0,"durationMs":1234}                (finished)
//	{"stream":"exit","exitCode":-1,"durationMs":600000,"timedOut":true}
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
	"time"
)

// Shipping defaults.
const (
	FlushEvery   = time.Second
	SegmentBytes = 64 << 10
	// MaxLine is the longest line in one record; longer lines are split.
	MaxLine = 64 << 10
	// SegmentDigits is the width of the sequence number in a segment key.
	SegmentDigits = 6
)

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

	mu      sync.Mutex
	buf     bytes.Buffer
	seq     int
	closed  bool
	err     error // first upload failure
	queue   chan segment
	stop    chan struct{}
	flusher sync.WaitGroup
	upload  sync.WaitGroup
	ctx     context.Context
}

type segment struct {
	key  string
	body []byte
}

// Open starts a log file under key. Segments are uploaded in order by one goroutine;
// when uploads fall behind, writers block (the command's pipes fill, so it waits
// rather than the agent buffering without bound). ctx bounds the uploads.
func Open(ctx context.Context, sink Sink, key string) *File {
	f := &File{sink: sink, key: key, queue: make(chan segment, 4), stop: make(chan struct{}), ctx: ctx}
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
	f.write(struct {
		Stream string `json:"stream"`
		Line   string `json:"line"`
	}{stream, line})
}

// Exit records how the command ended.
func (f *File) Exit(exitCode int, duration time.Duration, timedOut bool) {
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
	f.buf.Write(b)
	f.buf.WriteByte('\n')
	if f.buf.Len() >= SegmentBytes {
		f.cutLocked()
	}
}

// cutLocked hands the buffer to the uploader as the next segment. It may block while
// the upload queue is full; f.mu is held, so writers wait too.
func (f *File) cutLocked() {
	if f.buf.Len() == 0 {
		return
	}
	f.seq++
	s := segment{key: SegmentKey(f.key, f.seq), body: bytes.Clone(f.buf.Bytes())}
	f.buf.Reset()
	f.queue <- s
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
			if !f.closed {
				f.cutLocked()
			}
			f.mu.Unlock()
		}
	}
}

func (f *File) uploader() {
	defer f.upload.Done()
	for s := range f.queue {
		if err := f.put(s); err != nil {
			f.mu.Lock()
			if f.err == nil {
				f.err = err
			}
			f.mu.Unlock()
		}
	}
}

// put stores one segment, retrying a few times (the SDK retries too).
func (f *File) put(s segment) error {
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 {
			select {
			case <-f.ctx.Done():
				return fmt.Errorf("put %s: %w", s.key, errors.Join(err, f.ctx.Err()))
			case <-time.After(time.Duration(try) * 500 * time.Millisecond):
			}
		}
		if err = f.sink.Put(f.ctx, s.key, s.body); err == nil {
			return nil
		}
	}
	return fmt.Errorf("put %s: %w", s.key, err)
}

// Close writes what is buffered and waits for every segment to be stored. It returns
// the first upload failure. Later writes are dropped.
func (f *File) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return f.firstErr()
	}
	close(f.stop)
	f.mu.Unlock()
	f.flusher.Wait() // no tick is mid-cut past this point

	f.mu.Lock()
	f.cutLocked()
	f.closed = true
	close(f.queue)
	f.mu.Unlock()
	f.upload.Wait()
	return f.firstErr()
}

func (f *File) firstErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
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
