// Package webhookexamples holds real GitHub webhook payloads for tests, taken from the
// npm package @octokit/webhooks-examples (version and integrity in payloads/SOURCE;
// regenerate with scripts/webhook-examples).
package webhookexamples

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

//go:embed payloads/*.json
var files embed.FS

// Example is one payload.
type Example struct {
	Name   string // file name without .json: "<event>.<action|none>.<n>"
	Event  string // the X-GitHub-Event it was sent as
	Action string // "" for events without actions
	Body   []byte
}

// Load returns the payload "<event>.<action|none>.<n>", e.g. "deployment_status.created.4".
// It panics when there is none: a test asking for a missing example is wrong.
func Load(name string) []byte {
	b, err := files.ReadFile("payloads/" + name + ".json")
	if err != nil {
		panic(fmt.Sprintf("webhookexamples: no example %q", name))
	}
	return b
}

// All returns every example, sorted by name.
func All() []Example {
	entries, err := files.ReadDir("payloads")
	if err != nil {
		panic(err)
	}
	var out []Example
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".json")
		parts := strings.Split(name, ".")
		ex := Example{Name: name, Event: parts[0], Action: parts[1], Body: Load(name)}
		if ex.Action == "none" {
			ex.Action = ""
		}
		out = append(out, ex)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// With returns body (a JSON object) with the values at dotted paths replaced or added,
// e.g. With(b, "deployment_status.environment_url", "http://127.0.0.1:1234"). A nil
// value deletes the field. Compact JSON comes out; GitHub signs whatever it sends.
func With(body []byte, kv ...any) []byte {
	var tree map[string]any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		panic(fmt.Sprintf("webhookexamples: %v", err))
	}
	for i := 0; i+1 < len(kv); i += 2 {
		path := strings.Split(kv[i].(string), ".")
		m := tree
		for _, p := range path[:len(path)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		if kv[i+1] == nil {
			delete(m, path[len(path)-1])
		} else {
			m[path[len(path)-1]] = kv[i+1]
		}
	}
	out, err := json.Marshal(tree)
	if err != nil {
		panic(err)
	}
	return out
}
