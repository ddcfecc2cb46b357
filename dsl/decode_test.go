package dsl_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

type inner struct {
	Port int `json:"port"`
}

type sample struct {
	Name   string            `json:"name"`
	Count  int               `json:"count,omitempty"`
	Ratio  float64           `json:"ratio,omitempty"`
	Tags   []string          `json:"tags,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	App    *inner            `json:"app,omitempty"`
	Apps   []inner           `json:"apps,omitempty"`
	Extra  json.RawMessage   `json:"extra,omitempty"`
	When   time.Time         `json:"when,omitzero"`
	Opaque any               `json:"opaque,omitempty"`
}

func (s *sample) Default() {
	if s.Count == 0 {
		s.Count = 3
	}
}

func (s *sample) Validate() error {
	if s.Count > 10 {
		return &dsl.FieldError{Field: "count", Message: "must be at most 10"}
	}
	return nil
}

var sampleRun = dsl.Define(dsl.Spec{Name: "sample", Version: "0.1.0", MaxDuration: time.Minute},
	func(c *dsl.Ctx, in sample) (int, error) { return in.Count, nil })

func TestDecodeInputsNamesTheField(t *testing.T) {
	cases := []struct {
		name, in, field, msg string
	}{
		{"unknown top-level", `{"name":"a","nmae":"b"}`, "nmae", "unknown field"},
		{"unknown nested", `{"name":"a","app":{"port":1,"host":"x"}}`, "app.host", "unknown field"},
		{"unknown in array", `{"name":"a","apps":[{"port":1},{"prot":2}]}`, "apps[1].prot", "unknown field"},
		{"missing required", `{}`, "name", "is required"},
		{"null required", `{"name":null}`, "name", "is required"},
		{"missing nested required", `{"name":"a","app":{}}`, "app.port", "is required"},
		{"string for int", `{"name":"a","count":"3"}`, "count", "expected an integer, got a string"},
		{"float for int", `{"name":"a","count":1.5}`, "count", "expected an integer, got 1.5"},
		{"huge int", `{"name":"a","count":1e40}`, "count", "expected an integer, got 1e40"},
		{"number for string", `{"name":7}`, "name", "expected a string, got a number"},
		{"wrong array item", `{"name":"a","tags":["x",2]}`, "tags[1]", "expected a string, got a number"},
		{"wrong map value", `{"name":"a","env":{"A":"1","B":true}}`, "env.B", "expected a string, got a boolean"},
		{"object for array", `{"name":"a","tags":{}}`, "tags", "expected an array, got an object"},
		{"time as number", `{"name":"a","when":5}`, "when", ""},
		{"not an object", `"x"`, "", "expected an object, got a string"},
		{"validate", `{"name":"a","count":11}`, "count", "must be at most 10"},
		{"not json", `{"name":`, "", "not valid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sampleRun.DecodeInputs(json.RawMessage(tc.in))
			var fe *dsl.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %T %v, want *dsl.FieldError", err, err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Message, tc.msg) {
				t.Fatalf("got field %q message %q, want %q containing %q", fe.Field, fe.Message, tc.field, tc.msg)
			}
		})
	}
}

func TestDecodeInputsNormalizes(t *testing.T) {
	got, err := sampleRun.DecodeInputs(json.RawMessage(`{"name":"a","opaque":{"k":[1,2]},"extra":{"z":1},"app":null}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"a","count":3,"extra":{"z":1},"opaque":{"k":[1,2]}}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestDefineRejectsABadSpec(t *testing.T) {
	for _, spec := range []dsl.Spec{
		{Name: "Bad_Name", Version: "1.0.0", MaxDuration: time.Second},
		{Name: "ok", Version: "1.0", MaxDuration: time.Second},
		{Name: "ok", Version: "1.0.0"},
		{Name: "ok", Version: "1.0.0", MaxDuration: time.Second, Pool: "gpu"},
		{Name: "ok", Version: "1.0.0", MaxDuration: time.Second, Schedules: []dsl.Schedule{{Cron: "0 5 * *"}}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Define accepted %+v", spec)
				}
			}()
			dsl.Define(spec, func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })
		}()
	}
}

func TestRegistryNamesAreSorted(t *testing.T) {
	mk := func(n string) dsl.Run {
		return dsl.Define(dsl.Spec{Name: n, Version: "1.0.0", MaxDuration: time.Second},
			func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })
	}
	r := dsl.NewRegistry(mk("zeta"), mk("alpha"), mk("mid"))
	if got := strings.Join(r.Names(), ","); got != "alpha,mid,zeta" {
		t.Fatal(got)
	}
}

func FuzzDecodeInputs(f *testing.F) {
	f.Add([]byte(`{"name":"a","apps":[{"port":1}],"env":{"A":"b"}}`))
	f.Add([]byte(`{"name":1e999}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := sampleRun.DecodeInputs(b)
		if err != nil {
			var fe *dsl.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a FieldError", err)
			}
			return
		}
		// What DecodeInputs accepts, it accepts again unchanged.
		again, err := sampleRun.DecodeInputs(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("normalized %s re-decodes as %s, %v", out, again, err)
		}
	})
}
