//go:build js && wasm

package cloudflare

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"syscall/js"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Namespaces maps an actor kind to the binding name of its Durable Object namespace
// (wrangler.jsonc durable_objects.bindings).
var Namespaces = map[string]string{
	actors.KindRun:       "RUN_ACTOR",
	actors.KindAdmission: "ADMISSION_ACTOR",
	actors.KindLease:     "LEASE_ACTOR",
}

// actorURL is the URL of a message to an actor's Durable Object: the address is in
// the path, so the object learns it with its first message.
func actorURL(to actors.Addr) string {
	return "https://actor.flare/" + url.PathEscape(to.Kind) + "/" + url.PathEscape(to.Key)
}

func parseActorPath(p string) (actors.Addr, error) {
	kind, key, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if !ok {
		return actors.Addr{}, fmt.Errorf("actor path %q: want /kind/key", p)
	}
	k, err1 := url.PathUnescape(kind)
	v, err2 := url.PathUnescape(key)
	if err := errors.Join(err1, err2); err != nil {
		return actors.Addr{}, fmt.Errorf("actor path %q: %w", p, err)
	}
	return actors.ParseAddr(k + "/" + v)
}

// Actors sends messages to actors' Durable Objects through their namespaces' stubs.
// The edge uses Call; the DO host uses it as its Transport.
type Actors struct{}

// stub returns the Durable Object stub of the actor at to.
func (Actors) stub(to actors.Addr) (js.Value, error) {
	binding, ok := Namespaces[to.Kind]
	if !ok {
		return js.Value{}, fmt.Errorf("actor %s: no namespace for kind %q", to, to.Kind)
	}
	ns := Env().Get(binding)
	if ns.Type() != js.TypeObject {
		return js.Value{}, fmt.Errorf("actor %s: binding %s is not configured", to, binding)
	}
	var stub js.Value
	err := try(func() { stub = ns.Call("get", ns.Call("idFromName", to.Key)) })
	return stub, err
}

// post delivers m and returns the reply's status and body.
func (a Actors) post(ctx context.Context, from, to actors.Addr, m actors.Message) (int, []byte, error) {
	body, err := actors.Marshal(m)
	if err != nil {
		return 0, nil, err
	}
	stub, err := a.stub(to)
	if err != nil {
		return 0, nil, err
	}
	init := jsObject.New()
	init.Set("method", "POST")
	h := jsObject.New()
	h.Set("content-type", "application/json")
	if from != (actors.Addr{}) {
		h.Set("x-flare-from", from.String())
	}
	init.Set("headers", h)
	init.Set("body", string(body))
	var p js.Value
	if err := try(func() { p = stub.Call("fetch", actorURL(to), init) }); err != nil {
		return 0, nil, fmt.Errorf("%s to %s: %w", m.Type(), to, err)
	}
	res, err := Await(ctx, p)
	if err != nil {
		return 0, nil, fmt.Errorf("%s to %s: %w", m.Type(), to, err)
	}
	text, err := Await(ctx, res.Call("text"))
	if err != nil {
		return 0, nil, fmt.Errorf("%s to %s: reply body: %w", m.Type(), to, err)
	}
	return res.Get("status").Int(), []byte(text.String()), nil
}

// Send implements Transport: a cast, whose reply (if any) is dropped.
func (a Actors) Send(ctx context.Context, from, to actors.Addr, m actors.Message) error {
	status, body, err := a.post(ctx, from, to, m)
	if err != nil {
		return err
	}
	if status >= 300 {
		return fmt.Errorf("%s to %s: %d %s", m.Type(), to, status, strings.TrimSpace(string(body)))
	}
	return nil
}

// ErrNoReply is actors.ErrNoReply: Call returns it when the reducer produced no Reply.
var ErrNoReply = actors.ErrNoReply

// Call delivers m to the actor at to and returns its reply, once the actor's new
// state is durable.
func (a Actors) Call(ctx context.Context, to actors.Addr, m actors.Message) (actors.Message, error) {
	status, body, err := a.post(ctx, actors.Addr{}, to, m)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusNoContent:
		return nil, fmt.Errorf("%s to %s: %w", m.Type(), to, ErrNoReply)
	case status != http.StatusOK:
		return nil, fmt.Errorf("%s to %s: %d %s", m.Type(), to, status, strings.TrimSpace(string(body)))
	}
	return actors.Unmarshal(body)
}

var _ Transport = Actors{}

// EdgeActors is the edge's Actors port (edge.Actors) over Durable Object stubs.
type EdgeActors struct{}

// Send implements edge.Actors: it returns once the actor's object has applied the
// message (and persisted its state), dropping any reply. The caller is a request
// handler, whose invocation must outlive the stub fetch.
func (EdgeActors) Send(to actors.Addr, m actors.Message) error {
	return Actors{}.Send(context.Background(), actors.Addr{}, to, m)
}

// Call implements edge.Actors.
func (EdgeActors) Call(ctx context.Context, to actors.Addr, m actors.Message) (actors.Message, error) {
	return Actors{}.Call(ctx, to, m)
}

var _ edge.Actors = EdgeActors{}

// actorMessage is the fetch of an actor's Durable Object: args are the object's key,
// its DurableObjectState, the class's kind, the URL path and the message (a string).
// It answers {status, body}: 200 with the reply, 204 without one, 400 for a bad
// message, 500 for a failure (the state is then as before the message).
func (s *server) actorMessage(args []js.Value) (any, error) {
	if s.w.Actors == nil {
		return nil, errors.New("actor message: no actor host")
	}
	key, state, kind := arg(args, 0).String(), arg(args, 1), arg(args, 2).String()
	answer := func(status int, body string) any {
		r := jsObject.New()
		r.Set("status", status)
		r.Set("body", body)
		return r
	}
	to, err := parseActorPath(arg(args, 3).String())
	if err == nil && to.Kind != kind {
		err = fmt.Errorf("actor %s sent to a %s object", to, kind)
	}
	if err != nil {
		return answer(http.StatusBadRequest, errorJSON("bad_address", err)), nil
	}
	m, err := actors.Unmarshal([]byte(arg(args, 4).String()))
	if err != nil {
		return answer(http.StatusBadRequest, errorJSON("bad_message", err)), nil
	}
	reply, err := s.w.Actors.Deliver(key, newSQLStorage(state), to, m)
	if err != nil {
		s.log.Error("actor message failed", "actor", to.String(), "message", m.Type(), "err", err)
		return answer(http.StatusInternalServerError, errorJSON("actor_failed", err)), nil
	}
	if reply == nil {
		return answer(http.StatusNoContent, ""), nil
	}
	b, err := actors.Marshal(reply)
	if err != nil {
		return nil, err
	}
	return answer(http.StatusOK, string(b)), nil
}

// actorAlarm is the alarm of an actor's Durable Object: args are the object's key,
// its DurableObjectState and the class's kind. A rejection makes the runtime retry
// the alarm.
func (s *server) actorAlarm(args []js.Value) (any, error) {
	if s.w.Actors == nil {
		return nil, errors.New("actor alarm: no actor host")
	}
	err := s.w.Actors.Alarm(arg(args, 0).String(), newSQLStorage(arg(args, 1)))
	if errors.Is(err, ErrNoActor) {
		return nil, nil // nothing to retry
	}
	return nil, err
}

func errorJSON(code string, err error) string {
	return fmt.Sprintf(`{"error":%q,"message":%q}`, code, err.Error())
}

// sqlStorage is an actor's Durable Object storage: two tables in the object's
// SQLite database (the header with the actor's address, and the rows) and the
// object's alarm.
type sqlStorage struct {
	storage js.Value // DurableObjectState.storage
	sql     js.Value // storage.sql
}

func newSQLStorage(state js.Value) *sqlStorage {
	st := state.Get("storage")
	return &sqlStorage{storage: st, sql: st.Get("sql")}
}

const actorSchema = `CREATE TABLE IF NOT EXISTS flare_actor (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	addr TEXT NOT NULL,
	header BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS flare_actor_rows (
	key TEXT PRIMARY KEY,
	data BLOB NOT NULL
)`

// Load implements Storage. It creates the tables on an object's first load.
func (s *sqlStorage) Load() (st Stored, ok bool, err error) {
	var addrErr error
	err = try(func() {
		s.sql.Call("exec", actorSchema)
		head := s.sql.Call("exec", "SELECT addr, header FROM flare_actor WHERE id = 1").Call("toArray")
		if head.Length() == 0 {
			return
		}
		r := head.Index(0)
		if st.Addr, addrErr = actors.ParseAddr(r.Get("addr").String()); addrErr != nil {
			return
		}
		st.Header = bytesFromJS(r.Get("header"))
		rows := s.sql.Call("exec", "SELECT key, data FROM flare_actor_rows").Call("toArray")
		st.Rows = make(map[string][]byte, rows.Length())
		for i, n := 0, rows.Length(); i < n; i++ {
			r := rows.Index(i)
			st.Rows[r.Get("key").String()] = bytesFromJS(r.Get("data"))
		}
		ok = true
	})
	if err == nil {
		err = addrErr
	}
	return st, ok, err
}

// Save implements Storage: one transaction (storage.transactionSync) through the
// JavaScript entry's sqlBatch helper, since a Go callback cannot throw to roll back.
func (s *sqlStorage) Save(c Change) error {
	batch := jsArray.New()
	add := func(query string, params ...any) {
		stmt := jsArray.New()
		stmt.Call("push", query)
		for _, p := range params {
			stmt.Call("push", p)
		}
		batch.Call("push", stmt)
	}
	if c.Header != nil {
		add(`INSERT INTO flare_actor (id, addr, header) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, header = excluded.header`,
			c.Addr.String(), blob(c.Header))
	}
	for _, r := range c.Rows {
		if r.Value == nil {
			add(`DELETE FROM flare_actor_rows WHERE key = ?`, r.Key)
		} else {
			add(`INSERT INTO flare_actor_rows (key, data) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET data = excluded.data`, r.Key, blob(r.Value))
		}
	}
	return try(func() { runtimeContext.Call("sqlBatch", s.storage, batch) })
}

// blob is b as an ArrayBuffer, which DO SQLite stores as a BLOB.
func blob(b []byte) js.Value { return bytesToJS(b).Get("buffer") }

// SetAlarm implements Storage.
func (s *sqlStorage) SetAlarm(t time.Time) func(context.Context) error {
	var p js.Value
	err := try(func() {
		if t.IsZero() {
			p = s.storage.Call("deleteAlarm")
		} else {
			p = s.storage.Call("setAlarm", t.UnixMilli())
		}
	})
	return func(ctx context.Context) error {
		if err != nil {
			return err
		}
		_, err := Await(ctx, p)
		return err
	}
}

var _ Storage = (*sqlStorage)(nil)

// Sandbox bindings (wrangler.jsonc): the lean and the chromium Container classes,
// or LocalAgentProxy under `wrangler dev` with AGENT_URL set.
const (
	SandboxLean    = "RUNS_SANDBOX"
	SandboxBrowser = "RUNS_SANDBOX_BROWSER"
)

// SandboxTransport returns a transport whose requests reach the agent in the sandbox
// named name (the Durable Object idFromName(name) of binding). Request URLs need a
// scheme and host, which the container ignores: http://sandbox/v1/... is fine.
func SandboxTransport(binding, name string) (http.RoundTripper, error) {
	ns := Env().Get(binding)
	if ns.Type() != js.TypeObject {
		return nil, fmt.Errorf("sandbox %s: binding %s is not configured", name, binding)
	}
	var stub js.Value
	if err := try(func() { stub = ns.Call("get", ns.Call("idFromName", name)) }); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", name, err)
	}
	return &FetchTransport{Fetcher: stub}, nil
}
