package local_test

import (
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/smtptest"
)

// TestFailedRunEmailsTheAllowedRecipientsOverSMTP: a failing dispatch with
// notify.emails reaches a real SMTP server (go-smtp) as one email to the allowed
// recipient only. The refused address comes first in the list, so without the
// allow-list its email would be the first one the server receives.
func TestFailedRunEmailsTheAllowedRecipientsOverSMTP(t *testing.T) {
	srv := smtptest.Start(t)
	st := startStack(t, env{"SMTP_HOST": srv.Addr, "EMAIL_FROM": "ci@flare.example", "EMAIL_FROM_NAME": "Flare",
		"EMAIL_ALLOWED_RECIPIENTS": "dev@example.com, ops@example.com"})
	repo, shas := gittest.Repo(t, 1)
	body := offloadBody(repo, shas[0], "echo 'summary line'; exit 3", nil)
	body["notify"] = map[string]any{"emails": []string{"evil@attacker.example", "dev@example.com"}}
	id := dispatch(t, st, "offload-test", body, "").body["executionId"].(string)
	if v := waitDone(t, st, id, 60*time.Second); v.Check.Conclusion != "failure" {
		t.Fatalf("conclusion %q", v.Check.Conclusion)
	}
	got, ok := srv.Next(30 * time.Second)
	if !ok {
		t.Fatal("no email reached the SMTP server")
	}
	if got.From != "ci@flare.example" || strings.Join(got.To, ",") != "dev@example.com" {
		t.Fatalf("envelope %s → %v; want ci@flare.example → dev@example.com only", got.From, got.To)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if subject != "[FlareDispatch] offload-test — ✗ failed" || msg.Header.Get("To") != "<dev@example.com>" {
		t.Fatalf("subject %q to %q", subject, msg.Header.Get("To"))
	}
	if extra, ok := srv.Next(0); ok {
		t.Fatalf("a second email went to %v", extra.To)
	}
}
