package actors

import (
	"errors"
	"fmt"
)

// ErrNoReply is what a host's Call returns when the reducer produced no Reply: both
// hosts (actors/host, the Durable Objects) wrap this one value, so callers test one.
var ErrNoReply = errors.New("actor produced no reply")

// Change is one transition of an actor as a host persists it: what Apply changed,
// serialised.
type Change struct {
	Header []byte      // the whole header; nil when it did not change
	Rows   []RowChange // the changed rows, in the order Dirty reported them
}

// RowChange is one changed row. Value is nil when the row was deleted; a row that
// exists with no content has an empty, non-nil Value.
type RowChange struct {
	Key   string
	Value []byte
}

// Saver persists one Change atomically: a host's storage, or its writer's queue.
type Saver interface {
	Save(c Change) error
}

// Commit is the persist rule of both hosts, called once after each Apply: it takes
// what Dirty reports (and so clears it), serialises exactly that and hands it to s.
// stored says whether storage already holds the actor. A new actor is stored whole
// with its first change, or as soon as its alarm or a restart must find it (Wake set,
// or not Idle); an address that changes nothing leaves no trace. Commit calls Save
// only when there is something to write, and reports whether it did.
func Commit(a Actor, stored bool, s Saver) (saved bool, err error) {
	header, rows := a.Dirty()
	if !stored && (header || len(rows) > 0 || !a.Idle() || !a.Wake().IsZero()) {
		header = true
	}
	var c Change
	if header {
		if c.Header, err = a.Header(); err != nil {
			return false, fmt.Errorf("header: %w", err)
		}
		if c.Header == nil {
			c.Header = []byte{}
		}
	}
	for _, k := range rows {
		v, ok, err := a.Row(k)
		if err != nil {
			return false, fmt.Errorf("row %q: %w", k, err)
		}
		if ok && v == nil {
			v = []byte{}
		}
		if !ok {
			v = nil
		}
		c.Rows = append(c.Rows, RowChange{Key: k, Value: v})
	}
	if c.Header == nil && len(c.Rows) == 0 {
		return false, nil
	}
	if err := s.Save(c); err != nil {
		return false, err
	}
	return true, nil
}
