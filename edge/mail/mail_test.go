package mail_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	flaremail "github.com/flare-dispatch/flare-dispatch/edge/mail"
	"github.com/flare-dispatch/flare-dispatch/internal/smtptest"
)

// TestSMTPDeliversToARealServer sends a composed message to a go-smtp server: the
// envelope names the one recipient and the data is the message, byte for byte.
func TestSMTPDeliversToARealServer(t *testing.T) {
	srv := smtptest.Start(t)
	m := flaremail.FromEnv(env{"SMTP_HOST": srv.Addr}.get, nil)
	raw := edge.ComposeMail("Flare", "ci@flare.example", "dev@example.com", "[FlareDispatch] x — ✓ succeeded", "text", "<p>html</p>", time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Send(ctx, edge.Mail{From: "ci@flare.example", To: "dev@example.com", Raw: raw}); err != nil {
		t.Fatal(err)
	}
	got, ok := srv.Next(10 * time.Second)
	if !ok {
		t.Fatal("the server received nothing")
	}
	if got.From != "ci@flare.example" || strings.Join(got.To, ",") != "dev@example.com" {
		t.Fatalf("envelope %s → %v", got.From, got.To)
	}
	if !bytes.Equal(bytes.TrimRight(got.Data, "\r\n"), bytes.TrimRight(raw, "\r\n")) {
		t.Fatalf("data differs:\n%s", got.Data)
	}
	if _, err := mail.ReadMessage(bytes.NewReader(got.Data)); err != nil {
		t.Fatal(err)
	}
}

func TestSMTPErrorsNameTheServer(t *testing.T) {
	m := &flaremail.SMTP{Addr: "127.0.0.1:1"}
	err := m.Send(context.Background(), edge.Mail{From: "a@b.io", To: "c@d.io"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("err %v", err)
	}
}

func TestWithoutSMTPHostTheSinkLogs(t *testing.T) {
	var buf bytes.Buffer
	m := flaremail.FromEnv(env{}.get, slog.New(slog.NewTextHandler(&buf, nil)))
	if err := m.Send(context.Background(), edge.Mail{From: "a@b.io", To: "c@d.io", Subject: "s"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "SMTP_HOST is unset") || !strings.Contains(buf.String(), "to=c@d.io") {
		t.Fatalf("log %q", buf.String())
	}
	if s, ok := flaremail.FromEnv(env{"SMTP_HOST": "mail.example"}.get, nil).(*flaremail.SMTP); !ok || s.Addr != "mail.example:25" {
		t.Fatalf("SMTP_HOST without a port: %#v", s)
	}
}

type env map[string]string

func (e env) get(k string) string { return e[k] }
