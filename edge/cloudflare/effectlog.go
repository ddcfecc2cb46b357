package cloudflare

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// EffectLog is an Effects that remembers the last effects it saw (for the dev
// routes and the Worker's integration test) and passes each on to Next.
type EffectLog struct {
	Next Effects // nil: record only
	Max  int     // entries kept; default 256

	mu      sync.Mutex
	entries []EffectEntry
}

// EffectEntry is one recorded effect.
type EffectEntry struct {
	At     time.Time       `json:"at"`
	From   string          `json:"from"`
	Type   string          `json:"type"`
	Effect json.RawMessage `json:"effect"`
}

// Handle implements Effects.
func (l *EffectLog) Handle(from actors.Addr, e actors.Effect) {
	b, err := json.Marshal(e)
	if err != nil {
		b, _ = json.Marshal(err.Error())
	}
	max := l.Max
	if max <= 0 {
		max = 256
	}
	l.mu.Lock()
	l.entries = append(l.entries, EffectEntry{At: time.Now(), From: from.String(), Type: fmt.Sprintf("%T", e), Effect: b})
	if over := len(l.entries) - max; over > 0 {
		l.entries = append(l.entries[:0:0], l.entries[over:]...)
	}
	l.mu.Unlock()
	if l.Next != nil {
		l.Next.Handle(from, e)
	}
}

// Entries returns the recorded effects, oldest first.
func (l *EffectLog) Entries() []EffectEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]EffectEntry(nil), l.entries...)
}

var _ Effects = (*EffectLog)(nil)
