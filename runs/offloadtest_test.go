package runs_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func TestOffloadTestInputErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, in, field, msg string
	}{
		{"unknown field", `{"repo":"acme/web","sha":"` + sha + `","command":"make","timeout":5}`, "timeout", "unknown field"},
		{"missing command", `{"repo":"acme/web","sha":"` + sha + `"}`, "command", "is required"},
		{"empty command", `{"repo":"acme/web","sha":"` + sha + `","command":"  "}`, "command", "must not be empty"},
		{"missing repo", `{"sha":"` + sha + `","command":"make"}`, "repo", "is required"},
		{"timeoutSec as string", `{"repo":"acme/web","sha":"` + sha + `","command":"make","timeoutSec":"600"}`, "timeoutSec", "expected an integer, got a string"},
		{"timeoutSec too long", `{"repo":"acme/web","sha":"` + sha + `","command":"make","timeoutSec":3601}`, "timeoutSec", "between 1 and 3600"},
		{"timeoutSec negative", `{"repo":"acme/web","sha":"` + sha + `","command":"make","timeoutSec":-1}`, "timeoutSec", "between 1 and 3600"},
		{"env not a map", `{"repo":"acme/web","sha":"` + sha + `","command":"make","env":["A=1"]}`, "env", "expected an object, got an array"},
		{"env value not a string", `{"repo":"acme/web","sha":"` + sha + `","command":"make","env":{"A":1}}`, "env.A", "expected a string, got a number"},
		{"env bad name", `{"repo":"acme/web","sha":"` + sha + `","command":"make","env":{"A-B":"1"}}`, "env.A-B", "not a valid environment variable name"},
		{"secrets wrong item", `{"repo":"acme/web","sha":"` + sha + `","command":"make","secrets":["OK",3]}`, "secrets[1]", "expected a string"},
		{"secrets bad name", `{"repo":"acme/web","sha":"` + sha + `","command":"make","secrets":["OK","no way"]}`, "secrets[1]", "not a valid secret name"},
		{"reportOnly not bool", `{"repo":"acme/web","sha":"` + sha + `","command":"make","reportOnly":"yes"}`, "reportOnly", "expected a boolean"},
		{"bad sha", `{"repo":"acme/web","sha":"main","command":"make"}`, "sha", "commit SHA"},
		{"bad repo", `{"repo":"https://evil/x y","sha":"` + sha + `","command":"make"}`, "repo", "owner/name"},
		{"inputs not an object", `[1]`, "", "expected an object"},
		{"image with a space", `{"repo":"acme/web","sha":"` + sha + `","command":"make","image":"node 20"}`, "image", "container image reference"},
	}
	run := runs.Registry()["offload-test"]
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run.DecodeInputs(json.RawMessage(tc.in))
			var fe *dsl.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %T %v", err, err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Message, tc.msg) {
				t.Fatalf("got %q: %q; want %q containing %q", fe.Field, fe.Message, tc.field, tc.msg)
			}
		})
	}
}

// TestContractInputsAreAccepted: every input contract §4 lists for a registered run
// decodes (the original's workflows send them), and unknown fields stay errors.
func TestContractInputsAreAccepted(t *testing.T) {
	for _, tc := range []struct{ run, in string }{
		{"offload-test", `{"repo":"acme/web","sha":"` + sha + `","command":"make","image":"ghcr.io/acme/ci:1","env":{"A":"1"},"secrets":["TOKEN"],"secretPrefix":"web/","timeoutSec":900,"install":true}`},
		{"matrix-fanout", `{"repo":"acme/web","sha":"` + sha + `","command":"make","shards":4,"image":"node:20"}`},
		{"deploy-smoke", `{"repo":"acme/web","sha":"` + sha + `","baseURL":"https://x.example","paths":["/"]}`},
		{"refresh-fixtures", `{"repo":"acme/web","sha":"` + sha + `","command":"make fixtures"}`},
	} {
		run := runs.Registry()[tc.run]
		if _, err := run.DecodeInputs(json.RawMessage(tc.in)); err != nil {
			t.Errorf("%s: %v", tc.run, err)
		}
		extra := strings.TrimSuffix(tc.in, "}") + `,"noSuchInput":1}`
		var fe *dsl.FieldError
		if _, err := run.DecodeInputs(json.RawMessage(extra)); !errors.As(err, &fe) || fe.Field != "noSuchInput" {
			t.Errorf("%s accepted an unknown field: %v", tc.run, err)
		}
	}
}

func TestOffloadTestInputsAreNormalized(t *testing.T) {
	run := runs.Registry()["offload-test"]
	got, err := run.DecodeInputs(json.RawMessage(`{"repo":"acme/web","sha":"ABCDEF0","command":"pnpm test"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"repo":"acme/web","sha":"abcdef0","command":"pnpm test","secrets":[],"timeoutSec":600}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestRegistry(t *testing.T) {
	r := runs.Registry()
	if got := strings.Join(r.Names(), ","); got != "cdp-acceptance,ci-triage-pr,deploy-smoke,matrix-fanout,offload-test,playwright-demo,playwright-e2e,pr-review,product-demo,refresh-fixtures,spec-drift-pr" {
		t.Fatal(got)
	}
	spec := r["offload-test"].Spec()
	if spec.MaxDuration.Seconds() != 1800 || spec.PoolName() != dsl.PoolLean {
		t.Fatalf("%+v", spec)
	}
}
