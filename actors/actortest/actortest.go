// Package actortest helps the reducers' unit tests: it persists an actor the way both
// hosts do (the header and the rows Dirty reports) so a test can reload it and check
// that what a guard needs survives a restart, and it picks messages out of effects.
package actortest

import (
	"maps"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// Store is one actor's stored state.
type Store struct {
	Header []byte
	Rows   map[string][]byte
}

// Save writes what Dirty reports, as a host's commit does.
func (s *Store) Save(t testing.TB, a actors.Actor) {
	t.Helper()
	header, rows := a.Dirty()
	if header || s.Header == nil {
		b, err := a.Header()
		if err != nil {
			t.Fatalf("header: %v", err)
		}
		s.Header = b
	}
	if s.Rows == nil {
		s.Rows = map[string][]byte{}
	}
	for _, k := range rows {
		b, ok, err := a.Row(k)
		if err != nil {
			t.Fatalf("row %s: %v", k, err)
		}
		if ok {
			s.Rows[k] = b
		} else {
			delete(s.Rows, k)
		}
	}
}

// Reload saves a and loads the stored state into fresh, which it returns.
func Reload[A actors.Actor](t testing.TB, s *Store, a actors.Actor, fresh A) A {
	t.Helper()
	s.Save(t, a)
	if err := fresh.Load(s.Header, maps.Clone(s.Rows)); err != nil {
		t.Fatalf("load: %v", err)
	}
	return fresh
}

// Sent lists the messages of the Send effects, in order.
func Sent(fx []actors.Effect) []actors.Message {
	var out []actors.Message
	for _, e := range fx {
		if s, ok := e.(actors.Send); ok {
			out = append(out, s.Msg)
		}
	}
	return out
}

// Only returns the effects of type E, in order.
func Only[E actors.Effect](fx []actors.Effect) []E {
	var out []E
	for _, e := range fx {
		if v, ok := e.(E); ok {
			out = append(out, v)
		}
	}
	return out
}
