// Package redact hides loaded secret values in text the agent ships out of the sandbox
// (log lines, output tails, failure messages).
package redact

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"sync"
)

// Mask replaces every secret value.
const Mask = "***"

// MinLen is the shortest value redacted: masking one- or two-character values would
// shred every log line and hide nothing worth hiding.
const MinLen = 3

// Redactor masks a growing set of secret values. The zero value is ready; it is safe
// for concurrent use.
type Redactor struct {
	mu       sync.RWMutex
	values   map[string]bool
	replacer *strings.Replacer
}

// Add registers secret values. A multi-line value is also masked line by line, since
// logs are shipped a line at a time; its JSON-escaped form is masked too.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil {
		r.values = map[string]bool{}
	}
	add := func(v string) {
		if len(v) >= MinLen {
			r.values[v] = true
		}
	}
	for _, v := range values {
		add(v)
		if b, err := json.Marshal(v); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		if strings.ContainsAny(v, "\r\n") {
			for _, line := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
				add(strings.TrimSpace(line))
			}
		}
	}
	// Longest first, so a value that contains another is masked whole.
	vs := make([]string, 0, len(r.values))
	for v := range r.values {
		vs = append(vs, v)
	}
	slices.SortFunc(vs, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	pairs := make([]string, 0, 2*len(vs))
	for _, v := range vs {
		pairs = append(pairs, v, Mask)
	}
	r.replacer = strings.NewReplacer(pairs...)
}

// String returns s with every registered value masked.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	rep := r.replacer
	r.mu.RUnlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// JSON masks values inside a JSON document (string contents, where secrets appear
// escaped). A result that no longer parses is replaced by a JSON string of the masked text.
func (r *Redactor) JSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	out := r.String(string(raw))
	if out == string(raw) {
		return raw
	}
	if !json.Valid([]byte(out)) {
		b, _ := json.Marshal(out)
		return b
	}
	return json.RawMessage(out)
}
