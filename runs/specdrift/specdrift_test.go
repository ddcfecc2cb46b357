package specdrift_test

import (
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/runs/specdrift"
)

func TestOnlyEditsInsideSpecsAreCommitted(t *testing.T) {
	current := []specdrift.File{{Path: "specs/runs.md", Content: "same\n"}}
	p := specdrift.Proposal{Summary: "drift", Edits: []specdrift.Edit{
		{Path: "specs/runs.md", NewContent: "same"}, // unchanged
		{Path: "specs/api.md", NewContent: "# API\nnew\n", Rationale: "the route shipped"},
		{Path: "specs/../main.go", NewContent: "package main"}, // escapes
		{Path: "README.md", NewContent: "x"},                   // outside specs
		{Path: "specs/x.go", NewContent: "x"},                  // not markdown
		{Path: "/specs/abs.md", NewContent: "x"},               // absolute
		{Path: "specs/empty.md", NewContent: "  "},             // empty
	}}
	ch, refused := specdrift.Changes(p, current)
	if len(ch) != 1 || ch[0].Path != "specs/api.md" || ch[0].Content != "# API\nnew\n" {
		t.Fatalf("%+v", ch)
	}
	if len(refused) != 5 {
		t.Fatalf("refused %v", refused)
	}
	if b := specdrift.Body(p, ch, refused); !strings.Contains(b, "`specs/api.md`: the route shipped") || !strings.Contains(b, "Dropped edits") {
		t.Fatal(b)
	}
}

func TestGatherCapsTheSpecs(t *testing.T) {
	big := strings.Repeat("x", specdrift.MaxSpecChars)
	g := specdrift.Gather([]specdrift.File{{Path: "specs/a.md", Content: "a"}, {Path: "specs/big.md", Content: big}})
	if !strings.Contains(g, "===FILE specs/a.md===") || strings.Contains(g, "===FILE specs/big.md===") || !strings.Contains(g, "specs/big.md") {
		t.Fatal(g[:200])
	}
}
