package logship_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/logship"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

// distant is the real S3 sink with a round trip added before each put: the store is
// R2 behind the Internet from a Container, not the loopback store of the tests.
type distant struct {
	logship.Sink
	rtt time.Duration
}

func (d distant) Put(ctx context.Context, key string, body []byte) error {
	time.Sleep(d.rtt)
	return d.Sink.Put(ctx, key, body)
}

// BenchmarkShipping is a command printing 16 MiB of 128-byte lines as fast as it can,
// shipped to the embedded S3 store with 0, 20 and 60 ms added to each put: MB/s from
// the first line until Close has stored the last segment. The shipper blocks the
// command's writes once its bound is reached, so this is how fast a chatty command can
// run. 60 ms is a plausible put to R2 from a Container.
func BenchmarkShipping(b *testing.B) {
	st := s3test.Start(b)
	line := strings.Repeat("x", 127)
	const size = 16 << 20
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond} {
		b.Run(fmt.Sprintf("rtt=%s", rtt), func(b *testing.B) {
			n := 0
			for b.Loop() {
				n++
				exec := fmt.Sprintf("bench-%d-%d", rtt.Milliseconds(), n)
				f := logship.Open(context.Background(), distant{sink(b, st, exec), rtt}, "logs/"+exec+"/exec.ndjson", logship.Options{})
				for range size / 128 {
					f.Line("stdout", line)
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(f.Segments()), "segments")
			}
			b.ReportMetric(float64(size)*float64(n)/b.Elapsed().Seconds()/1e6, "MB/s")
		})
	}
}
