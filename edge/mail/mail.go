// Package mail is the local build's edge.Mailer: SMTP to a configurable host, or,
// without one, a sink that logs what would have been sent. The Worker sends through
// the send_email binding instead (edge/cloudflare/email); nothing here is linked there.
package mail

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// SMTP delivers through one SMTP server: STARTTLS when it offers it, PLAIN auth when
// a username is set (net/smtp allows that only over TLS or to localhost).
type SMTP struct {
	Addr               string // host:port
	Username, Password string
}

// Send implements edge.Mailer. The dial honours ctx's deadline; the conversation is
// bounded by the same deadline on the connection.
func (s *SMTP) Send(ctx context.Context, m edge.Mail) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", s.Addr, err)
	}
	defer c.Close()
	if err := s.deliver(c, host, m); err != nil {
		return fmt.Errorf("smtp %s: to %s: %w", s.Addr, m.To, err)
	}
	return c.Quit()
}

func (s *SMTP) deliver(c *smtp.Client, host string, m edge.Mail) error {
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return err
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return err
		}
	}
	if err := c.Mail(m.From); err != nil {
		return err
	}
	if err := c.Rcpt(m.To); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(m.Raw); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// Sink logs each message instead of sending it: the local default, so a dispatch
// with notify.emails shows what it would have sent.
type Sink struct{ Log *slog.Logger }

// Send implements edge.Mailer.
func (s Sink) Send(_ context.Context, m edge.Mail) error {
	s.Log.Info("email not sent: SMTP_HOST is unset (logged sink)", "from", m.From, "to", m.To, "subject", m.Subject, "bytes", len(m.Raw))
	return nil
}

// FromEnv is the local mailer: SMTP to SMTP_HOST (host or host:port, port 25 by
// default) with SMTP_USERNAME/SMTP_PASSWORD, else the logged sink.
func FromEnv(getenv func(string) string, log *slog.Logger) edge.Mailer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host := strings.TrimSpace(getenv("SMTP_HOST"))
	if host == "" {
		return Sink{Log: log}
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "25")
	}
	return &SMTP{Addr: host, Username: getenv("SMTP_USERNAME"), Password: getenv("SMTP_PASSWORD")}
}

var (
	_ edge.Mailer = (*SMTP)(nil)
	_ edge.Mailer = Sink{}
)
