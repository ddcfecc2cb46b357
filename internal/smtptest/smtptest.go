// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on loopback
// for tests, and hands over every message it accepts with its envelope.
package smtptest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one accepted message: the envelope and the data as received.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Server is a running SMTP server; Messages delivers what it accepted, in order.
type Server struct {
	Addr     string
	Messages chan Message
}

// Start serves SMTP on 127.0.0.1 until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), Messages: make(chan Message, 64)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{out: s.Messages}, nil }))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	srv.MaxMessageBytes = 4 << 20
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return s
}

// Next waits up to within for the next message; ok is false when none came.
func (s *Server) Next(within time.Duration) (Message, bool) {
	select {
	case m := <-s.Messages:
		return m, true
	case <-time.After(within):
		return Message{}, false
	}
}

type session struct {
	out chan<- Message
	m   Message
}

func (s *session) Reset()        { s.m = Message{} }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.m.From = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.To = append(s.m.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.Data = b
	s.out <- s.m
	s.m = Message{}
	return nil
}
