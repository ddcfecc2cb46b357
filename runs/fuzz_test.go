package runs_test

import (
	"errors"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// FuzzRunInputs: every registered run's input decoder, fed anything a dispatch could
// carry, answers normalized inputs or a FieldError naming the field (the 400 a
// dispatch gets), never a panic; what it accepts, it accepts again unchanged.
func FuzzRunInputs(f *testing.F) {
	reg := runs.Registry()
	names := reg.Names()
	f.Add(uint8(0), []byte(`{}`))
	f.Add(uint8(1), []byte(`{"repo":"acme/web","sha":"0123456789abcdef0123456789abcdef01234567","command":"go test ./..."}`))
	f.Add(uint8(2), []byte(`{"baseURL":"http://[::1]:0","paths":["../x"],"shards":-1}`))
	f.Add(uint8(3), []byte(`{"timeoutMs":1e999,"env":{"A\u0000":"b"}}`))
	f.Add(uint8(4), []byte(`[]`))
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		run := reg[names[int(which)%len(names)]]
		out, err := run.DecodeInputs(raw)
		if err != nil {
			var fe *dsl.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("%s: error %T (%v) is not a FieldError", run.Spec().Name, err, err)
			}
			return
		}
		again, err := run.DecodeInputs(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("%s: normalized %s re-decodes as %s, %v", run.Spec().Name, out, again, err)
		}
	})
}
