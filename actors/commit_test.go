package actors_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// fake is an actor whose state the test sets directly.
type fake struct {
	actors.Changes
	header    []byte
	headerErr error
	rows      map[string][]byte // a nil value: the row exists, empty
	wake      time.Time
	idle      bool
}

func (f *fake) Apply(time.Time, actors.Message) []actors.Effect { return nil }
func (f *fake) Wake() time.Time                                 { return f.wake }
func (f *fake) Idle() bool                                      { return f.idle }
func (f *fake) Header() ([]byte, error)                         { return f.header, f.headerErr }
func (f *fake) Load([]byte, map[string][]byte) error            { return nil }
func (f *fake) Row(k string) ([]byte, bool, error) {
	v, ok := f.rows[k]
	return v, ok, nil
}

// saves records what Commit saved.
type saves struct {
	got []actors.Change
	err error
}

func (s *saves) Save(c actors.Change) error {
	s.got = append(s.got, c)
	return s.err
}

func TestCommitPersistsWhatDirtyReports(t *testing.T) {
	wake := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		stored bool
		actor  func() *fake
		want   []actors.Change // nil: nothing saved
	}{
		{"a new actor that changes nothing leaves no trace", false,
			func() *fake { return &fake{header: []byte("h"), idle: true} }, nil},
		{"a new actor with an alarm is stored whole", false,
			func() *fake { return &fake{header: []byte("h"), idle: true, wake: wake} },
			[]actors.Change{{Header: []byte("h")}}},
		{"a new actor with work in progress is stored whole", false,
			func() *fake { return &fake{header: []byte("h")} },
			[]actors.Change{{Header: []byte("h")}}},
		{"a new actor's first row brings its header", false,
			func() *fake {
				f := &fake{header: []byte("h"), idle: true, rows: map[string][]byte{"r1": []byte("v")}}
				f.MarkRow("r1")
				return f
			},
			[]actors.Change{{Header: []byte("h"), Rows: []actors.RowChange{{Key: "r1", Value: []byte("v")}}}}},
		{"a stored actor writes only the rows that changed", true,
			func() *fake {
				f := &fake{header: []byte("h"), rows: map[string][]byte{"r1": []byte("v")}}
				f.MarkRow("r1")
				return f
			},
			[]actors.Change{{Rows: []actors.RowChange{{Key: "r1", Value: []byte("v")}}}}},
		{"a nil header is stored as empty", true,
			func() *fake {
				f := &fake{}
				f.MarkHeader()
				return f
			},
			[]actors.Change{{Header: []byte{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &saves{}
			f := tc.actor()
			saved, err := actors.Commit(f, tc.stored, s)
			if err != nil {
				t.Fatal(err)
			}
			if saved != (tc.want != nil) || !reflect.DeepEqual(s.got, tc.want) {
				t.Fatalf("saved %v %+v, want %+v", saved, s.got, tc.want)
			}
			// Dirty is cleared: a second Commit with no Apply between saves nothing.
			s.got = nil
			if saved, _ := actors.Commit(f, true, s); saved || len(s.got) != 0 {
				t.Fatalf("second commit saved %+v", s.got)
			}
		})
	}
}

func TestCommitTellsDeletedRowsFromEmptyOnes(t *testing.T) {
	f := &fake{rows: map[string][]byte{"empty": nil}}
	f.MarkRow("empty")
	f.MarkRow("gone")
	s := &saves{}
	if _, err := actors.Commit(f, true, s); err != nil {
		t.Fatal(err)
	}
	rows := map[string][]byte{}
	for _, r := range s.got[0].Rows {
		rows[r.Key] = r.Value
	}
	if v, ok := rows["gone"]; !ok || v != nil {
		t.Fatalf("deleted row: %q (present %v), want a nil value", v, ok)
	}
	if v := rows["empty"]; v == nil || len(v) != 0 {
		t.Fatalf("empty row saved as %#v, want []byte{}", v)
	}
}

func TestCommitReportsFailuresAndSavesNothing(t *testing.T) {
	f := &fake{headerErr: errors.New("cycle")}
	f.MarkHeader()
	s := &saves{}
	if saved, err := actors.Commit(f, true, s); saved || err == nil || err.Error() != "header: cycle" || len(s.got) != 0 {
		t.Fatalf("header failure: saved %v, err %v, saves %d", saved, err, len(s.got))
	}
	f = &fake{}
	f.MarkHeader()
	s = &saves{err: errors.New("disk full")}
	if saved, err := actors.Commit(f, true, s); saved || err == nil || err.Error() != "disk full" {
		t.Fatalf("save failure: saved %v, err %v", saved, err)
	}
}
