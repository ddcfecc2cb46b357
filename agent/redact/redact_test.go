package redact

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

func TestRedactorMasksEveryForm(t *testing.T) {
	var r Redactor
	r.Add("hunter22", "ab", "tok-123", "tok-123-long", "-----BEGIN KEY-----\nMIIEsecretbody\n-----END KEY-----", `quo"te`)
	cases := map[string]string{
		"password=hunter22!":       "password=***!",
		"short ab stays":           "short ab stays",
		"tok-123-long and tok-123": "*** and ***",
		"line: MIIEsecretbody":     "line: ***",
		`{"v":"quo\"te"}`:          `{"v":"***"}`,
		"nothing here":             "nothing here",
		"hunter22hunter22":         "******",
	}
	for in, want := range cases {
		if got := r.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactorJSONStaysValid(t *testing.T) {
	var r Redactor
	r.Add(`a"b\c`)
	raw, _ := json.Marshal(map[string]string{"cause": `echo a"b\c failed`})
	got := r.JSON(raw)
	if !json.Valid(got) || strings.Contains(string(got), `a\"b`) {
		t.Fatalf("got %s", got)
	}
}

func TestRedactorNilAndEmpty(t *testing.T) {
	var nilR *Redactor
	if nilR.String("x") != "x" {
		t.Fatal("nil redactor changed text")
	}
	var r Redactor
	if r.String("hunter22") != "hunter22" {
		t.Fatal("empty redactor changed text")
	}
}

func TestRedactorConcurrentUse(t *testing.T) {
	var r Redactor
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); r.Add("secret-value") }()
		go func() { defer wg.Done(); _ = r.String("a secret-value b") }()
	}
	wg.Wait()
	if got := r.String("a secret-value b"); got != "a *** b" {
		t.Fatal(got)
	}
}
