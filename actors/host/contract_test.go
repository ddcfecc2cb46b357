package host_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/host"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
)

// dropEffects is an effect handler with no edge behind it: the contract is about
// delivery, not about what the effects do.
type dropEffects struct{}

func (dropEffects) Handle(actors.Addr, actors.Effect) {}

// TestActorsContract holds the native host to the edge's Actors port contract, with
// the real reducers, as the Durable Object host is in the Worker.
func TestActorsContract(t *testing.T) {
	h, err := host.Open(context.Background(), filepath.Join(t.TempDir(), "actors.db"), kinds.Factory(kinds.DefaultConfig()), dropEffects{}, host.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop(context.Background()) })
	porttest.Actors(t, "native-", func(*testing.T) edge.Actors { return h })
}
