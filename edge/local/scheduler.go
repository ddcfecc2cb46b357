package local

import (
	"context"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local/cron"
)

// schedule is flare up's stand-in for Cloudflare Cron Triggers: it fires
// edge.Scheduled for each declared cron at its times, until ctx ends.
func schedule(ctx context.Context, srv *edge.Server, now func() time.Time) {
	var scheds []cron.Schedule
	for _, c := range srv.Crons() {
		s, err := cron.Parse(c)
		if err != nil {
			srv.Log.Error("run declares an invalid cron", "cron", c, "err", err)
			continue
		}
		scheds = append(scheds, s)
	}
	if len(scheds) == 0 {
		return
	}
	for {
		t := now()
		var next time.Time
		for _, s := range scheds {
			if n, ok := s.Next(t); ok && (next.IsZero() || n.Before(next)) {
				next = n
			}
		}
		if next.IsZero() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next.Sub(t)):
		}
		for _, s := range scheds {
			if s.Matches(next) {
				srv.Scheduled(ctx, s.String(), next)
			}
		}
	}
}
