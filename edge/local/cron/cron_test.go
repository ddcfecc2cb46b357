package cron

import (
	"strings"
	"testing"
	"time"
)

func TestNextFindsTheFiringTimes(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 30, 15, 0, time.UTC) // a Saturday
	cases := map[string]string{
		"0 5 * * *":     "2026-11-29T05:00:00Z",
		"*/15 * * * *":  "2026-11-28T10:45:00Z",
		"0 14 * * 1-5":  "2026-11-30T14:00:00Z",
		"0 0 1 JAN *":   "2027-01-01T00:00:00Z",
		"30 10 28 11 *": "2027-11-28T10:30:00Z",
		"0 9 * * SUN":   "2026-11-29T09:00:00Z",
		"0 9 * * 7":     "2026-11-29T09:00:00Z",
		"5,10 11 * * *": "2026-11-28T11:05:00Z",
		"0 12 31 2 *":   "", // never
	}
	for expr, want := range cases {
		s, err := Parse(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		got, ok := s.Next(at)
		if want == "" {
			if ok {
				t.Errorf("%s fired at %s; it never should", expr, got)
			}
			continue
		}
		if !ok || got.Format(time.RFC3339) != want {
			t.Errorf("Next(%s) = %s, want %s", expr, got.Format(time.RFC3339), want)
		}
	}
}

func TestParseNamesTheWrongField(t *testing.T) {
	for expr, field := range map[string]string{
		"60 * * * *": "minute", "* 24 * * *": "hour", "* * 0 * *": "day-of-month",
		"* * * 13 *": "month", "* * * * 8": "day-of-week", "*/0 * * * *": "minute", "5-1 * * * *": "minute",
	} {
		_, err := Parse(expr)
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Parse(%q) = %v, want an error naming %s", expr, err, field)
		}
	}
	if _, err := Parse("* * * *"); err == nil {
		t.Error("four fields accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("*/5 1-3 * JAN-MAR MON")
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		if next, ok := s.Next(time.Unix(0, 0)); ok && !s.Matches(next) {
			t.Fatalf("%q: Next %s does not match", expr, next)
		}
	})
}
