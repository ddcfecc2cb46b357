package dsl

import (
	"context"
	"fmt"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// MaxChildren bounds one fan-out.
const MaxChildren = 64

var childKeyChars = pattern.NewSet("A-Za-z0-9_-")

// FanOut is the work of a fan-out run: children executions started together.
type FanOut struct {
	// Name prefixes the recipe's steps: <name>-spawn and <name>-results.
	Name     string
	Children []ChildSpec
	// FailFast cancels the children still queued or running as soon as one ends in
	// anything but success; otherwise every child runs to its end (wait-all).
	FailFast bool
}

// RunFanOut is the recipe of every run that fans out (matrix-fanout and its kin): step
// <name>-spawn starts the children as executions of their own (each with its own
// sandbox, logs and journal, queued at this execution's place), then the run suspends,
// holding no slot, until every child has ended; the attempt that resumes it records
// every child's result as step <name>-results and returns them in the order given.
//
// Return its error when it is not nil: it may be a *Suspended.
func RunFanOut(c *Ctx, f FanOut) ([]ChildResult, error) {
	if c.Children == nil {
		return nil, &StepFailed{Step: f.Name + "-spawn", Cause: "this platform cannot start child executions"}
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	ids, err := Step(c, f.Name+"-spawn", func(ctx context.Context) ([]string, error) {
		return c.Children.Spawn(ctx, f.FailFast, f.Children)
	}, Retries(2), Backoff(DefaultBackoff))
	if err != nil {
		return nil, err
	}
	return Step(c, f.Name+"-results", func(ctx context.Context) ([]ChildResult, error) {
		all, err := c.Children.Results(ctx)
		if err != nil {
			return nil, err
		}
		byExec := make(map[string]ChildResult, len(all))
		for _, r := range all {
			byExec[r.Exec] = r
		}
		out := make([]ChildResult, 0, len(ids))
		var pending []string
		for i, id := range ids {
			r, ok := byExec[id]
			if !ok {
				return nil, fmt.Errorf("child %s (%s) is unknown to the edge", f.Children[i].Key, id)
			}
			if !r.Ended() {
				pending = append(pending, id)
			}
			out = append(out, r)
		}
		if len(pending) > 0 {
			return nil, Suspend(c, Suspension{Children: pending})
		}
		return out, nil
	}, Retries(2), Backoff(DefaultBackoff))
}

func (f FanOut) validate() error {
	fail := func(format string, a ...any) error {
		return &StepFailed{Step: f.Name + "-spawn", Cause: fmt.Sprintf(format, a...)}
	}
	switch {
	case f.Name == "":
		return &StepFailed{Cause: "a fan-out needs a name"}
	case len(f.Children) == 0:
		return fail("no children to start")
	case len(f.Children) > MaxChildren:
		return fail("%d children; a fan-out starts at most %d", len(f.Children), MaxChildren)
	}
	seen := map[string]bool{}
	for i, ch := range f.Children {
		switch {
		case !childKeyChars.Run(ch.Key, 1, 40):
			return fail("child %d: key %q must match ^[A-Za-z0-9_-]{1,40}$", i, ch.Key)
		case seen[ch.Key]:
			return fail("child %d: key %q used twice", i, ch.Key)
		case ch.Run == "":
			return fail("child %s: no run", ch.Key)
		}
		seen[ch.Key] = true
	}
	return nil
}
