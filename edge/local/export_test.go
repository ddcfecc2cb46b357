package local

import "github.com/flare-dispatch/flare-dispatch/actors"

// QueueEffect hands e to the stack's effect queue, as the actor host does.
func QueueEffect(st *Stack, from actors.Addr, e actors.Effect) { st.effects.Handle(from, e) }
