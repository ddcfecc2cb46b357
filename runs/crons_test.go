package runs_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// TestWranglerCronsMatchTheRuns holds wrangler.jsonc's triggers.crons to the schedules
// the registered runs declare: Cloudflare only calls scheduled() for listed crons, and
// a listed cron no run declares would tick for nothing.
func TestWranglerCronsMatchTheRuns(t *testing.T) {
	raw, err := os.ReadFile("../wrangler.jsonc")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Triggers struct {
			Crons []string `json:"crons"`
		} `json:"triggers"`
	}
	if err := json.Unmarshal(jsonc(raw), &cfg); err != nil {
		t.Fatalf("wrangler.jsonc: %v", err)
	}
	want := edge.New(edge.Deps{Runs: runs.Registry()}).Crons()
	got := slices.Sorted(slices.Values(cfg.Triggers.Crons))
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		b, _ := json.Marshal(want)
		t.Fatalf("wrangler.jsonc triggers.crons = %q; the runs declare %q. Write:\n  \"triggers\": { \"crons\": %s },", got, want, b)
	}
}

var trailingComma = regexp.MustCompile(`,(\s*[}\]])`)

// jsonc turns JSON with comments and trailing commas into JSON: comments outside
// strings are dropped.
func jsonc(b []byte) []byte {
	var out strings.Builder
	s := string(b)
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			out.WriteString(s[i:min(j+1, len(s))])
			i = j
		case strings.HasPrefix(s[i:], "//"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
			out.WriteByte('\n')
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				i = len(s)
			} else {
				i += end + 3
			}
		default:
			out.WriteByte(s[i])
		}
	}
	return []byte(trailingComma.ReplaceAllString(out.String(), "$1"))
}

func TestJSONCStripsCommentsOutsideStrings(t *testing.T) {
	in := `{ // c
  "url": "https://x/y", /* block */ "a": [1, 2,], "s": "a\"//b",
}`
	var v map[string]any
	if err := json.Unmarshal(jsonc([]byte(in)), &v); err != nil || v["url"] != "https://x/y" || v["s"] != `a"//b` {
		t.Fatalf("%v %v", v, err)
	}
}
