package host

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// toy is the smallest actor with a header and rows: a queue of strings plus
// counters that show what the host delivered (alarms, recoveries).
type toy struct {
	key   string
	h     toyHeader
	rows  map[string]string
	dirtH bool
	dirtR []string
}

type toyHeader struct {
	N         int       `json:"n"`    // items ever pushed
	Head      int       `json:"head"` // first item not popped
	Busy      bool      `json:"busy"`
	Wake      time.Time `json:"wake"`
	Alarms    int       `json:"alarms"`
	Recovered int       `json:"recovered"`
	Pings     int       `json:"pings"`
}

// Messages only the toy understands.
type (
	tPush    struct{ Item string }
	tPop     struct{}
	tGet     struct{}
	tBusy    struct{ Busy bool }
	tWake    struct{ After time.Duration } // 0 clears the wake
	tForward struct {
		To   actors.Addr
		Item string
	}
	tPing struct {
		N    int
		Peer actors.Addr
	}
	tPanic  struct{}
	tSilent struct{}
	// Replies.
	tCount struct{ N int }
	tSnap  struct {
		H     toyHeader
		Items []string
	}
)

func (tPush) Type() string    { return "toy.push" }
func (tPop) Type() string     { return "toy.pop" }
func (tGet) Type() string     { return "toy.get" }
func (tBusy) Type() string    { return "toy.busy" }
func (tWake) Type() string    { return "toy.wake" }
func (tForward) Type() string { return "toy.forward" }
func (tPing) Type() string    { return "toy.ping" }
func (tPanic) Type() string   { return "toy.panic" }
func (tSilent) Type() string  { return "toy.silent" }
func (tCount) Type() string   { return "toy.count" }
func (tSnap) Type() string    { return "toy.snap" }

func toyAddr(key string) actors.Addr { return actors.Addr{Kind: "toy", Key: key} }

func newToy(a actors.Addr) (actors.Actor, error) {
	if a.Kind != "toy" {
		return nil, fmt.Errorf("toy factory: kind %q", a.Kind)
	}
	return &toy{key: a.Key, rows: map[string]string{}}, nil
}

func rowKey(i int) string { return fmt.Sprintf("%08d", i) }

func (t *toy) Apply(now time.Time, m actors.Message) []actors.Effect {
	me := toyAddr(t.key)
	switch m := m.(type) {
	case tPush:
		t.rows[rowKey(t.h.N)] = m.Item
		t.dirtR = append(t.dirtR, rowKey(t.h.N))
		t.h.N++
		t.dirtH = true
		return []actors.Effect{actors.Progress{Exec: t.key, Attempt: t.h.N}, actors.Reply{Msg: tCount{t.h.N}}}
	case tPop:
		if t.h.Head == t.h.N {
			return []actors.Effect{actors.Reply{Msg: tCount{0}}}
		}
		delete(t.rows, rowKey(t.h.Head))
		t.dirtR = append(t.dirtR, rowKey(t.h.Head))
		t.h.Head++
		t.dirtH = true
		return []actors.Effect{actors.Reply{Msg: tCount{t.h.N - t.h.Head}}}
	case tGet:
		return []actors.Effect{actors.Reply{Msg: t.snap()}}
	case tBusy:
		t.h.Busy, t.dirtH = m.Busy, true
		return []actors.Effect{actors.Reply{Msg: tCount{t.h.N}}}
	case tWake:
		t.h.Wake, t.dirtH = time.Time{}, true
		if m.After != 0 {
			t.h.Wake = now.Add(m.After)
		}
		return []actors.Effect{actors.Reply{Msg: tCount{t.h.N}}}
	case actors.Alarm:
		if t.h.Wake.IsZero() || now.Before(t.h.Wake) {
			return nil // early or stale: nothing due
		}
		t.h.Alarms++
		t.h.Wake, t.dirtH = time.Time{}, true
		return []actors.Effect{actors.Progress{Exec: t.key, Status: "alarm", Attempt: t.h.Alarms}}
	case actors.Recover:
		t.h.Recovered++
		t.dirtH = true
		return []actors.Effect{actors.Progress{Exec: t.key, Status: "recover", Attempt: t.h.Recovered}}
	case tForward:
		return []actors.Effect{actors.Send{To: m.To, Msg: tPush{m.Item}}}
	case tPing:
		t.h.Pings++
		t.dirtH = true
		return []actors.Effect{actors.Send{To: m.Peer, Msg: tPing{N: m.N + 1, Peer: me}}}
	case tPanic:
		panic("toy told to panic")
	}
	return nil
}

func (t *toy) snap() tSnap {
	s := tSnap{H: t.h}
	for i := t.h.Head; i < t.h.N; i++ {
		s.Items = append(s.Items, t.rows[rowKey(i)])
	}
	return s
}

func (t *toy) Wake() time.Time { return t.h.Wake }
func (t *toy) Idle() bool      { return !t.h.Busy }

func (t *toy) Dirty() (bool, []string) {
	h, r := t.dirtH, t.dirtR
	t.dirtH, t.dirtR = false, nil
	return h, r
}

func (t *toy) Header() ([]byte, error) { return json.Marshal(t.h) }

func (t *toy) Row(k string) ([]byte, bool, error) {
	v, ok := t.rows[k]
	if !ok {
		return nil, false, nil
	}
	return []byte(v), true, nil
}

func (t *toy) Load(header []byte, rows map[string][]byte) error {
	if err := json.Unmarshal(header, &t.h); err != nil {
		return err
	}
	for k, v := range rows {
		t.rows[k] = string(v)
	}
	return nil
}

// effects records what the host handed to the EffectHandler; check, if set, runs
// on the writer goroutine as each effect arrives.
type effects struct {
	mu    sync.Mutex
	got   []actors.Effect
	from  []actors.Addr
	check func(from actors.Addr, e actors.Effect)
}

func (f *effects) Handle(from actors.Addr, e actors.Effect) {
	if f.check != nil {
		f.check(from, e)
	}
	f.mu.Lock()
	f.got = append(f.got, e)
	f.from = append(f.from, from)
	f.mu.Unlock()
}

// progress returns the Progress effects with status st from key.
func (f *effects) progress(key string, st actors.Status) []actors.Progress {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []actors.Progress
	for _, e := range f.got {
		if p, ok := e.(actors.Progress); ok && p.Exec == key && p.Status == st {
			out = append(out, p)
		}
	}
	return slices.Clip(out)
}
