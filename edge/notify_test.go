package edge_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// recordingMailer keeps what the edge asked it to send (the SMTP path itself is
// tested against a real server in edge/mail and edge/local).
type recordingMailer struct {
	mu   sync.Mutex
	sent []edge.Mail
}

func (m *recordingMailer) Send(_ context.Context, x edge.Mail) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, x)
	return nil
}

func (m *recordingMailer) all() []edge.Mail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]edge.Mail(nil), m.sent...)
}

func notifyServer(t *testing.T, cfg edge.Config, mailer edge.Mailer, n *edge.Notify) (*edge.Server, string) {
	t.Helper()
	meta, kv := newMeta(), newKV()
	cfg.HMACSecret = "secret"
	d := edge.Deps{Config: cfg, Runs: runs.Registry(), Actors: newActors(), Meta: meta, KV: kv, Log: slog.New(slog.DiscardHandler)}
	if mailer != nil {
		d.Mailer = mailer
	}
	s := edge.New(d)
	p := edge.Params{Exec: "offload-test:acme-app:abc", Run: "offload-test", Repo: "acme/app", SHA: "abc", Origin: "https://d.example", Notify: n}
	in, _ := json.Marshal(p)
	if _, err := meta.CreateExecution(context.Background(), edge.Execution{ID: p.Exec, Run: p.Run, Repo: p.Repo, SHA: p.SHA, Status: "running", Input: in}); err != nil {
		t.Fatal(err)
	}
	return s, p.Exec
}

var mailCfg = edge.Config{EmailFrom: "ci@flare.example", EmailFromName: "Flare Dispatch ✈", EmailAllowedRecipients: []string{"Dev@Example.com", "ops@example.com"}}

func failed(exec string) actors.Progress {
	return actors.Progress{Exec: exec, Status: actors.StatusFailure, At: time.Now(),
		Failure: &actors.Failure{Tag: dsl.TagExecFailed, Message: "command exited 1", Detail: json.RawMessage(`{"exitCode":1,"stderrTail":"<b>boom</b>"}`)},
		Output:  json.RawMessage(`{"summaryMd":"3 tests <i>failed</i>","reportUrl":"https://r.example/x?a=1&b=2"}`)}
}

// TestNotifySendsOnlyToAllowedRecipientsOnce: a recipient off EMAIL_ALLOWED_RECIPIENTS
// gets nothing (fails without AllowedRecipients' filter), a repeated terminal
// progress sends nothing more (fails without the notified/ marker), and a duplicate
// address in another case is one email.
func TestNotifySendsOnlyToAllowedRecipientsOnce(t *testing.T) {
	m := &recordingMailer{}
	s, exec := notifyServer(t, mailCfg, m, &edge.Notify{Emails: []string{"dev@example.com", "evil@attacker.example", "DEV@example.com"}})
	for range 2 {
		s.Perform(context.Background(), actors.RunAddr(exec), failed(exec))
	}
	sent := m.all()
	if len(sent) != 1 || sent[0].To != "dev@example.com" || sent[0].From != "ci@flare.example" {
		t.Fatalf("sent to %v; want one email to dev@example.com", recipients(sent))
	}
	msg, err := mail.ReadMessage(bytes.NewReader(sent[0].Raw))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
	from, _ := dec.DecodeHeader(msg.Header.Get("From"))
	if subject != "[FlareDispatch] offload-test — ✗ failed" || from != "Flare Dispatch ✈ <ci@flare.example>" || msg.Header.Get("To") != "<dev@example.com>" {
		t.Fatalf("headers: subject %q from %q to %q", subject, from, msg.Header.Get("To"))
	}
	if msg.Header.Get("Message-Id") == "" || msg.Header.Get("Date") == "" {
		t.Fatalf("no Message-ID or Date: %v", msg.Header)
	}
	parts := readParts(t, msg)
	text, html := parts["text/plain"], parts["text/html"]
	for _, want := range []string{"3 tests <i>failed</i>", "The command could not run", "reportUrl: https://r.example/x?a=1&b=2", "/logs/offload-test:acme-app:abc?t="} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}
	// HTML: the run's text and the failure escaped, the output URL a link
	for _, want := range []string{"3 tests &lt;i&gt;failed&lt;/i&gt;", `<a href="https://r.example/x?a=1&amp;b=2">`, "<pre"} {
		if !strings.Contains(html, want) {
			t.Errorf("html part lacks %q:\n%s", want, html)
		}
	}
	if strings.Contains(html, "<i>") || strings.Contains(html, "<b>boom") {
		t.Errorf("run text reached the HTML unescaped:\n%s", html)
	}
}

func readParts(t *testing.T, msg *mail.Message) map[string]string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("content type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	out := map[string]string{}
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Fatalf("part %v is not base64", p.Header)
		}
		b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		out[ct] = string(b)
	}
	return out
}

// TestNotifyWhenAsked: a success is notified only with notify.on "always"; without a
// mailer or EMAIL_FROM nothing is sent and the run is not failed by it.
func TestNotifyWhenAsked(t *testing.T) {
	success := func(exec string) actors.Progress {
		return actors.Progress{Exec: exec, Status: actors.StatusSuccess, At: time.Now(), Output: json.RawMessage(`{"summaryMd":"all green"}`)}
	}
	m := &recordingMailer{}
	s, exec := notifyServer(t, mailCfg, m, &edge.Notify{Emails: []string{"ops@example.com"}})
	s.Perform(context.Background(), actors.RunAddr(exec), success(exec))
	if n := len(m.all()); n != 0 {
		t.Fatalf("a success without notify.on=always sent %d emails", n)
	}
	s, exec = notifyServer(t, mailCfg, m, &edge.Notify{Emails: []string{"ops@example.com"}, On: edge.NotifyAlways})
	s.Perform(context.Background(), actors.RunAddr(exec), success(exec))
	if sent := m.all(); len(sent) != 1 || sent[0].Subject != "[FlareDispatch] offload-test — ✓ succeeded" {
		t.Fatalf("sent to %v", recipients(sent))
	}
	noFrom := mailCfg
	noFrom.EmailFrom = ""
	m2 := &recordingMailer{}
	s, exec = notifyServer(t, noFrom, m2, &edge.Notify{Emails: []string{"ops@example.com"}})
	s.Perform(context.Background(), actors.RunAddr(exec), failed(exec))
	if n := len(m2.all()); n != 0 {
		t.Fatalf("without EMAIL_FROM %d emails were sent", n)
	}
}

func TestAllowedRecipientsRefusesWhatIsNotListed(t *testing.T) {
	to, refused := edge.AllowedRecipients([]string{"a@x.io", "B@X.io", "c@x.io", "a@x.io"}, []string{"A@x.io", "b@x.io"})
	if strings.Join(to, ",") != "a@x.io,b@x.io" || strings.Join(refused, ",") != "c@x.io" {
		t.Fatalf("to %v refused %v", to, refused)
	}
	if to, _ := edge.AllowedRecipients([]string{"a@x.io"}, nil); len(to) != 0 {
		t.Fatalf("an empty allow-list allowed %v", to)
	}
}

// TestComposeMailEncodesLongSubjects: a long non-ASCII subject is folded into encoded
// words of at most 75 bytes that decode back to it.
func TestComposeMailEncodesLongSubjects(t *testing.T) {
	subject := "[FlareDispatch] " + strings.Repeat("ünïcödé-run ", 12) + "— ✓ succeeded"
	raw := edge.ComposeMail("", "a@b.io", "c@d.io", subject, "t", "<p>h</p>", time.Unix(0, 0))
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))]), "\r\n") {
		if len(line) > 78 {
			t.Errorf("header line of %d bytes: %q", len(line), line)
		}
	}
	got, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || got != subject {
		t.Fatalf("subject decodes to %q (%v)", got, err)
	}
}

func recipients(ms []edge.Mail) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.From+"→"+m.To+": "+m.Subject)
	}
	return out
}

func TestSubjectCountsStories(t *testing.T) {
	n := edge.Notification{Run: "product-demo", Status: actors.StatusSuccess, Output: json.RawMessage(`{"stories":[{},{},{}],"passed":2}`)}
	if got := n.Subject(); got != "[FlareDispatch] product-demo — ✓ 2/3 passed" {
		t.Fatalf("subject %q", got)
	}
	n.Status = actors.StatusFailure
	if got := n.Subject(); got != "[FlareDispatch] product-demo — ✗ failed" {
		t.Fatalf("subject %q", got)
	}
}

// TestMailSafeRefusesHeaderBreakingAddresses: an allow-listed entry that could end a
// header or an SMTP command is refused all the same (fails without mailSafe).
func TestMailSafeRefusesHeaderBreakingAddresses(t *testing.T) {
	bad := "dev@example.com>\r\nBcc: spy@evil.example"
	if to, refused := edge.AllowedRecipients([]string{bad}, []string{bad}); len(to) != 0 || len(refused) != 1 {
		t.Fatalf("to %q refused %q", to, refused)
	}
}

func TestDispatchRefusesAnUnknownNotifyOn(t *testing.T) {
	s, _ := notifyServer(t, mailCfg, nil, nil)
	body := []byte(`{"run":"offload-test","github":{"repo":"acme/app","sha":"0123456789abcdef0123456789abcdef01234567"},` +
		`"inputs":{"repo":"acme/app","command":"true"},"notify":{"emails":["dev@example.com"],"on":"sometimes"}}`)
	req := httptest.NewRequest(http.MethodPost, "/v1/dispatch/offload-test", bytes.NewReader(body))
	req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader("secret", body))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var out struct{ Error, Field string }
	json.Unmarshal(rec.Body.Bytes(), &out)
	if rec.Code != http.StatusBadRequest || out.Error != "invalid_body" || out.Field != "notify.on" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
