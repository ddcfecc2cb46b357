package edge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Email notify (contract §9): when an execution that a dispatch asked to notify ends,
// its recipients that are on EMAIL_ALLOWED_RECIPIENTS get one email each with the
// run's own summary (output.summaryMd), its failure, its output links and the log
// link. Failures are notified by default, successes when notify.on is "always".
// Nothing here fails a run: every problem is logged and the execution goes on.

// Mailer sends one message: the Cloudflare send_email binding in the Worker
// (edge/cloudflare), SMTP or a logged sink locally (edge/mail).
type Mailer interface {
	Send(ctx context.Context, m Mail) error
}

// Mail is one message to one recipient. Raw is the whole RFC 5322 message (headers,
// a blank line, the MIME body; CRLF line ends), which is what both the send_email
// binding's EmailMessage and SMTP's DATA take.
type Mail struct {
	From, To, Subject string
	Raw               []byte
}

const (
	NotifyOnFailure = "failure"
	NotifyAlways    = "always"
)

// notifySendTimeout bounds one send: a mail server that hangs must not hold the
// execution's effect queue.
const notifySendTimeout = 30 * time.Second

func notifiedKey(exec string) string { return "notified/" + exec }

// notify sends the completion email of a terminal execution, once.
func (s *Server) notify(ctx context.Context, ex Execution, p Params, pr actors.Progress, checkSummary string) {
	if p.Notify == nil || len(p.Notify.Emails) == 0 || !pr.Status.Terminal() {
		return
	}
	failed := pr.Status != actors.StatusSuccess && !(pr.Failure != nil && pr.Failure.Tag == dsl.TagRunSkipped)
	if !failed && p.Notify.On != NotifyAlways {
		return
	}
	log := s.Log.With("execution", pr.Exec, "run", ex.Run)
	if s.Mailer == nil || s.Config.EmailFrom == "" {
		log.Info("email notify skipped: no mailer or EMAIL_FROM unset", "recipients", len(p.Notify.Emails))
		return
	}
	// A terminal Progress is repeated after a restart: the marker makes the email go
	// out once. It is written before sending (at most once: a second copy is worse
	// than a lost one for a notification).
	if _, done, err := s.KV.Get(ctx, notifiedKey(pr.Exec)); err != nil || done {
		if err != nil {
			log.Warn("email notify skipped: marker unreadable", "err", err)
		}
		return
	}
	to, refused := AllowedRecipients(p.Notify.Emails, s.Config.EmailAllowedRecipients)
	if len(refused) > 0 {
		log.Warn("email notify: recipients not on EMAIL_ALLOWED_RECIPIENTS refused", "field", "notify.emails", "refused", strings.Join(refused, ","))
	}
	if len(to) == 0 {
		return
	}
	if err := s.KV.Put(ctx, notifiedKey(pr.Exec), s.Now().UTC().Format(time.RFC3339), 0); err != nil {
		log.Warn("email notify skipped: marker not written", "err", err)
		return
	}
	n := Notification{Run: ex.Run, Exec: pr.Exec, Repo: ex.Repo, SHA: ex.SHA, Status: pr.Status, Output: pr.Output,
		LogLink: s.ViewerLink(s.originOf(p), pr.Exec), CheckSummary: checkSummary}
	if pr.Failure != nil {
		n.FailureMd = dsl.Markdown(*toWire(pr.Failure))
	}
	subject := n.Subject()
	for _, rcpt := range to {
		raw := ComposeMail(s.Config.EmailFromName, s.Config.EmailFrom, rcpt, subject, n.Text(), n.HTML(), s.Now())
		sctx, cancel := context.WithTimeout(ctx, notifySendTimeout)
		err := s.Mailer.Send(sctx, Mail{From: s.Config.EmailFrom, To: rcpt, Subject: subject, Raw: raw})
		cancel()
		if err != nil {
			log.Warn("email notify failed", "to", rcpt, "err", err)
			continue
		}
		log.Info("email notify sent", "to", rcpt)
	}
}

// AllowedRecipients splits emails into those on the allow-list (compared without
// case, each once) and the rest. An empty allow-list allows no one.
func AllowedRecipients(emails, allowed []string) (to, refused []string) {
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[strings.ToLower(strings.TrimSpace(a))] = true
	}
	seen := map[string]bool{}
	for _, e := range emails {
		k := strings.ToLower(strings.TrimSpace(e))
		if seen[k] {
			continue
		}
		seen[k] = true
		if ok[k] && mailSafe(k) {
			to = append(to, k)
		} else {
			refused = append(refused, e)
		}
	}
	return to, refused
}

// mailSafe refuses what could break out of an address in a header or an SMTP command.
func mailSafe(addr string) bool {
	return addr != "" && !strings.ContainsAny(addr, "\r\n<>,;:\"()[]\\ \t")
}

// Notification is what a completion email says.
type Notification struct {
	Run, Exec, Repo, SHA string
	Status               actors.Status
	Output               json.RawMessage
	LogLink              string
	CheckSummary         string // the check-run's text (cost line included)
	FailureMd            string
}

// Subject is the contract's: "[FlareDispatch] <run> — ✓ succeeded", "— ✓ P/T passed"
// for a run whose output has stories (product-demo), or "— ✗ failed" (cancelled and
// timed out are named as such).
func (n Notification) Subject() string {
	switch n.Status {
	case actors.StatusSuccess:
		var o struct {
			Stories []json.RawMessage `json:"stories"`
			Passed  *int              `json:"passed"`
		}
		if json.Unmarshal(n.Output, &o) == nil && len(o.Stories) > 0 && o.Passed != nil {
			return fmt.Sprintf("[FlareDispatch] %s — ✓ %d/%d passed", n.Run, *o.Passed, len(o.Stories))
		}
		return "[FlareDispatch] " + n.Run + " — ✓ succeeded"
	case actors.StatusCancelled:
		return "[FlareDispatch] " + n.Run + " — ✗ cancelled"
	case actors.StatusTimedOut:
		return "[FlareDispatch] " + n.Run + " — ✗ timed out"
	}
	return "[FlareDispatch] " + n.Run + " — ✗ failed"
}

// links are the output's top-level string fields that are http(s) URLs, by name.
func (n Notification) links() [][2]string {
	var o map[string]json.RawMessage
	if json.Unmarshal(n.Output, &o) != nil {
		return nil
	}
	var out [][2]string
	for k, v := range o {
		var u string
		if json.Unmarshal(v, &u) == nil && (strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://")) && !strings.ContainsAny(u, " \r\n") {
			out = append(out, [2]string{k, u})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// Text is the plain-text part.
func (n Notification) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nexecution %s\nrepository %s @ %s\nstatus %s\n", strings.TrimPrefix(n.Subject(), "[FlareDispatch] "), n.Exec, n.Repo, n.SHA, n.Status)
	if md := RunSummary(n.Output); md != "" {
		fmt.Fprintf(&b, "\n%s\n", md)
	}
	if n.FailureMd != "" {
		fmt.Fprintf(&b, "\n%s\n", n.FailureMd)
	}
	for _, l := range n.links() {
		fmt.Fprintf(&b, "\n%s: %s", l[0], l[1])
	}
	fmt.Fprintf(&b, "\n\nlogs: %s\n", n.LogLink)
	return b.String()
}

// HTML is the HTML part: every value escaped, output URLs as links, the run's
// summary and the failure in <pre> (markdown is not rendered: no HTML from a run or a
// log reaches a mail client as markup).
func (n Notification) HTML() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<!doctype html><html><body style="font-family:sans-serif"><h2>%s</h2><p>execution <code>%s</code><br>repository %s @ <code>%s</code><br>status <b>%s</b></p>`,
		esc(strings.TrimPrefix(n.Subject(), "[FlareDispatch] ")), esc(n.Exec), esc(n.Repo), esc(n.SHA), esc(string(n.Status)))
	if md := RunSummary(n.Output); md != "" {
		fmt.Fprintf(&b, `<pre style="white-space:pre-wrap">%s</pre>`, esc(md))
	}
	if n.FailureMd != "" {
		fmt.Fprintf(&b, `<pre style="white-space:pre-wrap">%s</pre>`, esc(n.FailureMd))
	}
	if ls := n.links(); len(ls) > 0 {
		b.WriteString("<ul>")
		for _, l := range ls {
			fmt.Fprintf(&b, `<li>%s: <a href="%s">%s</a></li>`, esc(l[0]), esc(l[1]), esc(l[1]))
		}
		b.WriteString("</ul>")
	}
	fmt.Fprintf(&b, `<p><a href="%s">View logs</a></p></body></html>`, esc(n.LogLink))
	return b.String()
}

// ComposeMail builds the MIME message by hand (multipart/alternative: text, then
// HTML; both UTF-8 in base64), small enough for the Worker, where no mail module is
// linked. The name and subject are RFC 2047 encoded words.
func ComposeMail(fromName, from, to, subject, text, html string, now time.Time) []byte {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	boundary := "flare-" + hex.EncodeToString(rnd[:])
	domain := from[strings.LastIndexByte(from, '@')+1:]
	var b strings.Builder
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	fromHdr := "<" + from + ">"
	if fromName != "" {
		fromHdr = encodeWord(fromName) + " " + fromHdr
	}
	h("From", fromHdr)
	h("To", "<"+to+">")
	h("Subject", encodeWord(subject))
	h("Date", now.UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+hex.EncodeToString(rnd[:])+"@"+domain+">")
	h("MIME-Version", "1.0")
	h("Auto-Submitted", "auto-generated")
	h("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	for _, part := range [][2]string{{"text/plain", text}, {"text/html", html}} {
		b.WriteString("--" + boundary + "\r\n")
		h("Content-Type", part[0]+"; charset=utf-8")
		h("Content-Transfer-Encoding", "base64")
		b.WriteString("\r\n")
		enc := base64.StdEncoding.EncodeToString([]byte(part[1]))
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return []byte(b.String())
}

// encodeWord is s as RFC 2047 "B" encoded words of at most 75 bytes each (split on
// rune boundaries), or s itself when it is printable ASCII.
func encodeWord(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	const maxRaw = 39 // 52 base64 bytes + 12 of "=?utf-8?b??=": a line under 78 after "Subject: "
	var words []string
	for len(s) > 0 {
		n := 0
		for n < len(s) {
			_, l := utf8.DecodeRuneInString(s[n:])
			if n+l > maxRaw {
				break
			}
			n += l
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, "\r\n ")
}
