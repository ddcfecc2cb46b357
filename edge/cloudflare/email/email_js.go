//go:build js && wasm

// Package email is the edge's Mailer over the Worker's send_email binding (Cloudflare
// Email Routing): each message is an EmailMessage (from "cloudflare:email", put on
// globalThis.FlareEmailMessage by worker/src/index.js) of the raw MIME text that
// edge.ComposeMail built. Cloudflare delivers only to verified destination
// addresses; the edge has already refused recipients off EMAIL_ALLOWED_RECIPIENTS.
package email

import (
	"context"
	"fmt"
	"syscall/js"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare"
)

// Binding is one send_email binding.
type Binding struct {
	b, message js.Value
}

var _ edge.Mailer = (*Binding)(nil)

// New returns the send_email binding named binding (wrangler.jsonc send_email).
func New(binding string) (*Binding, error) {
	b := cloudflare.Env().Get(binding)
	if b.Type() != js.TypeObject {
		return nil, fmt.Errorf("email: binding %s is not configured", binding)
	}
	msg := js.Global().Get("FlareEmailMessage")
	if msg.Type() != js.TypeFunction {
		return nil, fmt.Errorf("email: globalThis.FlareEmailMessage is not set (worker/src/index.js)")
	}
	return &Binding{b: b, message: msg}, nil
}

// Send implements edge.Mailer.
func (b *Binding) Send(ctx context.Context, m edge.Mail) error {
	var p js.Value
	if err := cloudflare.Try(func() { p = b.b.Call("send", b.message.New(m.From, m.To, string(m.Raw))) }); err != nil {
		return fmt.Errorf("send_email to %s: %w", m.To, err)
	}
	if _, err := cloudflare.Await(ctx, p); err != nil {
		return fmt.Errorf("send_email to %s: %w", m.To, err)
	}
	return nil
}
