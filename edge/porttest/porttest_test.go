package porttest_test

import (
	"reflect"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
)

// TestRecorderReportsWhatTestingWould: the Worker's runner records errors, ends a case
// at Fatal and survives a panic, so a failing suite in the Worker reads as failing.
func TestRecorderReportsWhatTestingWould(t *testing.T) {
	rec := porttest.NewRecorder()
	after := false
	rec.Run("pass", func(*porttest.Recorder) {})
	rec.Run("errors", func(r *porttest.Recorder) { r.Errorf("one %d", 1); r.Error("two") })
	rec.Run("fatal", func(r *porttest.Recorder) { r.Fatalf("stop"); after = true })
	rec.Run("panic", func(r *porttest.Recorder) { panic("boom") })
	rec.Run("outer", func(r *porttest.Recorder) { r.Run("inner", func(r *porttest.Recorder) { r.Fatal("deep") }) })
	want := []porttest.Result{
		{Name: "pass"},
		{Name: "errors", Failures: []string{"one 1", "two\n"}},
		{Name: "fatal", Failures: []string{"stop"}},
		{Name: "panic", Failures: []string{"panic: boom"}},
		{Name: "outer/inner", Failures: []string{"deep\n"}},
		{Name: "outer", Failures: []string{"outer/inner failed"}},
	}
	if got := rec.Results(); !reflect.DeepEqual(got, want) {
		t.Fatalf("results\n got %q\nwant %q", got, want)
	}
	if after {
		t.Fatal("Fatalf did not end the case")
	}
}

func TestCasesNameEverySuite(t *testing.T) {
	for _, s := range []string{"metadata", "kv"} {
		if len(porttest.Cases(s)) < 5 {
			t.Errorf("%s: %v", s, porttest.Cases(s))
		}
	}
}
