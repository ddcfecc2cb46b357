package local_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// hostileCommand prints a line that is HTML, ANSI colours, and an OSC 8 hyperlink to a
// javascript: URL: the viewer must show all of it as text.
const hostileCommand = `printf '<img src=x onerror=alert(1)> \033[31mred\033[0m \033]8;;javascript:alert(1)\007click\033]8;;\007\n'`

func getWith(t testing.TB, u string, h map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func viewerURL(st *local.Stack, id, tok string) string {
	return st.URL + "/logs/" + url.PathEscape(id) + "?t=" + url.QueryEscape(tok)
}

var acceptHTML = map[string]string{"Accept": "text/html,application/xhtml+xml"}

func TestViewerNeedsTheTokenAndServesANoncedPage(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	accepted := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "echo hi", nil), "").body
	id := accepted["executionId"].(string)
	v := waitDone(t, st, id, 60*time.Second)

	// The 202's logsUrl keeps the original's API form (the Action derives the status
	// URL from it); detailsUrl is the viewer; a browser opening logsUrl gets the page.
	logsURL, _ := accepted["logsUrl"].(string)
	if want := st.URL + "/v1/executions/" + id + "/logs?t=" + token(st, id); logsURL != want {
		t.Fatalf("logsUrl %q, want %q", logsURL, want)
	}
	if d, _ := accepted["detailsUrl"].(string); d != viewerURL(st, id, token(st, id)) {
		t.Fatalf("detailsUrl %q is not the viewer", d)
	}
	if resp, body := getWith(t, logsURL, acceptHTML); resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "nonce-") ||
		!strings.Contains(body, "<html") {
		t.Fatalf("logsUrl in a browser: %d %q", resp.StatusCode, body)
	}
	if resp, body := getWith(t, logsURL, nil); resp.StatusCode != 200 || !strings.Contains(body, "hi\n") {
		t.Fatalf("logsUrl as text: %d %q", resp.StatusCode, body)
	}

	for _, tok := range []string{"", "wrong", token(st, "someone-else")} {
		if resp, body := getWith(t, viewerURL(st, id, tok), acceptHTML); resp.StatusCode != http.StatusForbidden {
			t.Errorf("token %q: %d, want 403 (%s)", tok, resp.StatusCode, body)
		}
	}
	// the check-run's details link is the viewer
	if !strings.Contains(v.Check.DetailsURL, "/logs/"+id+"?t=") {
		t.Fatalf("details link %q is not the viewer", v.Check.DetailsURL)
	}
	nonces := map[string]bool{}
	for range 2 {
		resp, body := getWith(t, viewerURL(st, id, token(st, id)), acceptHTML)
		csp := resp.Header.Get("Content-Security-Policy")
		m := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]+)'`).FindStringSubmatch(csp)
		if resp.StatusCode != 200 || m == nil || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Fatalf("viewer: %d CSP %q", resp.StatusCode, csp)
		}
		if !strings.Contains(body, `<script nonce="`+m[1]+`">`) || strings.Contains(body, "<script>") {
			t.Fatalf("the page's script does not carry the header's nonce %s", m[1])
		}
		if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Fatalf("headers %v", resp.Header)
		}
		nonces[m[1]] = true
	}
	if len(nonces) != 2 {
		t.Fatal("the nonce is the same on two responses")
	}
	// clients that do not ask for HTML keep getting text from the same link
	resp, body := getWith(t, viewerURL(st, id, token(st, id)), nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(body, "hi\n") {
		t.Fatalf("text: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = getWith(t, viewerURL(st, id, token(st, id))+"&format=ndjson", nil)
	if resp.Header.Get("Content-Type") != "application/x-ndjson" || !strings.Contains(body, `"line":"hi"`) {
		t.Fatalf("ndjson: %s %q", resp.Header.Get("Content-Type"), body)
	}
}

// sse reads server-sent events from r.
type sseEvent struct{ name, id, data string }

func readEvents(r io.Reader, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(r)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" || ev.data != "" {
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}

func openEvents(t *testing.T, ctx context.Context, u string) <-chan sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent)
	go readEvents(resp.Body, ch)
	return ch
}

type lineEvent struct{ F, K, H string }

func TestViewerRendersHostileLinesAsText(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	id := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], hostileCommand, nil), "").body["executionId"].(string)
	waitDone(t, st, id, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got string
	ended := false
	for ev := range openEvents(t, ctx, viewerURL(st, id, token(st, id))) {
		switch ev.name {
		case "line":
			var l lineEvent
			if err := json.Unmarshal([]byte(ev.data), &l); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(l.H, "onerror") {
				got = l.H
			}
		case "end":
			ended = true
		}
	}
	if !ended {
		t.Fatal("the stream of a finished execution did not end")
	}
	// Fails without the OSC filter in safeTerminalText: terminal-to-html renders OSC 8
	// as <a href="javascript:alert(1)">.
	want := `&lt;img src=x onerror=alert(1)&gt; <span class="term-fg31">red</span> click`
	if got != want {
		t.Fatalf("rendered\n%s\nwant\n%s", got, want)
	}
}

func TestViewerTailsLinesWhileTheRunGoes(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	marker := filepath.Join(t.TempDir(), "release")
	cmd := fmt.Sprintf("echo first-line; while [ ! -f %s ]; do sleep 0.1; done; echo second-line", marker)
	id := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], cmd, nil), "").body["executionId"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	events := openEvents(t, ctx, viewerURL(st, id, token(st, id)))
	released := false
	var states []string
	for ev := range events {
		switch ev.name {
		case "state":
			var s struct{ Status string }
			json.Unmarshal([]byte(ev.data), &s)
			states = append(states, s.Status)
		case "line":
			if strings.Contains(ev.data, "first-line") {
				// the command is still blocked on the marker: this line came live
				if s := executionView(t, st, id).Execution.Status; s != "running" {
					t.Fatalf("status %s when the first line arrived", s)
				}
				os.WriteFile(marker, nil, 0o644)
				released = true
			}
			if strings.Contains(ev.data, "second-line") && !released {
				t.Fatal("second line before the release")
			}
		case "end":
			if !released || states[len(states)-1] != "success" {
				t.Fatalf("end: released %v states %v", released, states)
			}
			if !strings.Contains(states[0], "running") && !strings.Contains(strings.Join(states, ","), "running") {
				t.Fatalf("never saw running: %v", states)
			}
			return
		}
	}
	t.Fatalf("stream closed without end (released %v, states %v, ctx %v)", released, states, ctx.Err())
}

func TestDashboardNeedsTheAdminToken(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	ok := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "true", nil), "").body["executionId"].(string)
	waitDone(t, st, ok, 60*time.Second)

	for _, h := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Cookie": "flare_session=forged"}} {
		if resp, _ := getWith(t, st.URL+"/", h); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("headers %v: %d, want 401", h, resp.StatusCode)
		}
	}
	resp, body := getWith(t, st.URL+"/", map[string]string{"Authorization": "Bearer " + st.Secrets.AdminToken})
	if resp.StatusCode != 200 || !strings.Contains(body, ok) || !strings.Contains(body, "/logs/"+ok+"?t="+token(st, ok)) {
		t.Fatalf("dashboard: %d\n%s", resp.StatusCode, body)
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "flare_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || strings.Contains(session.Value, st.Secrets.AdminToken) {
		t.Fatalf("session cookie %+v", session)
	}
	cookie := map[string]string{"Cookie": "flare_session=" + session.Value}
	if resp, _ := getWith(t, st.URL+"/", cookie); resp.StatusCode != 200 {
		t.Fatalf("with the cookie: %d", resp.StatusCode)
	}
	for q, shown := range map[string]bool{"status=success": true, "status=failure": false, "run=offload-test": true, "run=other": false, "repo=local/app": true} {
		_, body := getWith(t, st.URL+"/?"+q, cookie)
		if strings.Contains(body, ok) != shown {
			t.Errorf("filter %s: shown %v, want %v", q, !shown, shown)
		}
	}
}
