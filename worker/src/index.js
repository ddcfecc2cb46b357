// The flare-dispatch Worker entry.
//
// Everything is served by one long-lived Go runtime per isolate (./runtime.js): HTTP
// requests, Cron Triggers, and the Durable Objects of the three actors, whose classes
// are defined here and forward fetch and alarm to Go with their DurableObjectState.
// The sandbox classes are Cloudflare Containers in production and, under
// `wrangler dev --var AGENT_URL:http://127.0.0.1:PORT`, plain Durable Objects that
// forward to an agent process on the host (LocalAgentProxy).

import { DurableObject, env } from "cloudflare:workers";
import { Container } from "@cloudflare/containers";
import { EmailMessage } from "cloudflare:email";
import wasmModule from "../../build/app.wasm";
import { GoRuntime, GoRuntimeDied } from "./runtime.js";

const go = new GoRuntime(wasmModule, env);

// The send_email adapter (edge/cloudflare/email) builds its messages with this class.
globalThis.FlareEmailMessage = EmailMessage;

// Headers cross into Go as one string: name "\n" value "\n" pairs (values cannot
// contain a newline), which costs Go one call instead of several per header.
function headersToString(headers) {
  let s = "";
  for (const [name, value] of headers) s += name + "\n" + value + "\n";
  return s;
}

function headersFromString(s) {
  const h = new Headers();
  for (let i = 0; i < s.length; ) {
    const a = s.indexOf("\n", i);
    const b = s.indexOf("\n", a + 1);
    h.append(s.slice(i, a), s.slice(a + 1, b));
    i = b + 1;
  }
  return h;
}

const nullBodyStatus = new Set([101, 204, 205, 304]);

function failure(where, err) {
  const died = err instanceof GoRuntimeDied;
  console.error(`flare: ${where} failed in Go:`, err);
  return Response.json(
    died
      ? { error: "runtime_restarting", message: "the Go runtime stopped; retry" }
      : { error: "internal_error", message: "internal error" },
    { status: died ? 503 : 500, headers: died ? { "retry-after": "1" } : {} },
  );
}

// Set on the first request: random values are not allowed at global scope.
let started, instanceId;

// Plain-JavaScript routes for the dev build: the baseline of the bench, and the
// runtime's own figures. Only with the var FLARE_DEV_ROUTES = "true".
function devRoute(url) {
  if (!instanceId) {
    started = Date.now();
    instanceId = crypto.randomUUID().slice(0, 12);
  }
  switch (url.pathname) {
    case "/__dev/js/health":
      return new Response(
        JSON.stringify({ ok: true, runtime: "js", instance: instanceId, uptime_ms: Date.now() - started }) + "\n",
        { headers: { "content-type": "application/json" } },
      );
    case "/__dev/js/runtime":
      return Response.json(go.stats());
  }
  return null;
}

// The bench's plain-JavaScript baseline of a replayed signed dispatch: the same work
// as the Go edge's POST /v1/dispatch/:run for an execution that exists (verify the
// HMAC, look up a learned installation and insert-or-ignore the execution in D1, one
// round trip to the run actor's Durable Object), without the edge's validation.
async function devDispatch(request, env) {
  const body = new Uint8Array(await request.arrayBuffer());
  const sig = (request.headers.get("x-flaredispatch-signature") ?? "").replace(/^sha256=/, "");
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(env.HMAC_SECRET ?? ""), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const mac = new Uint8Array((sig.match(/../g) ?? []).map((h) => parseInt(h, 16)));
  if (mac.length !== 32 || !(await crypto.subtle.verify("HMAC", key, mac, body))) {
    return Response.json({ error: "unauthorized" }, { status: 401 });
  }
  const d = JSON.parse(new TextDecoder().decode(body));
  const exec = request.headers.get("idempotency-key") ?? `${d.run}:js`;
  await env.RUNS_METADATA.prepare("SELECT value FROM kv WHERE key = ?").bind(`installation:${d.github.repo}`).first();
  await env.RUNS_METADATA.prepare(
    "INSERT OR IGNORE INTO executions (id, run, repo, ref, sha, status, started_at, input_json) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
  ).bind(exec, d.run, d.github.repo, "refs/heads/main", d.github.sha, Date.now(), JSON.stringify(d.inputs)).run();
  const stub = env.RUN_ACTOR.get(env.RUN_ACTOR.idFromName(exec));
  const start = { type: "run.start", body: { exec, run: d.run, pool: "lean", sandbox: exec, maxDuration: 3600e9, maxAttempts: 0 } };
  const r = await stub.fetch(`https://actor.flare/run/${encodeURIComponent(exec)}`, { method: "POST", body: JSON.stringify(start) });
  const reply = await r.json();
  return Response.json({ executionId: exec, status: reply.body?.status, deduped: !reply.body?.created }, { status: 202 });
}

// Websockets (specs/cloudflare.md, "WebSockets"). Go cannot hijack a connection, so
// it accepts a websocket by answering 101 with x-flare-websocket naming the upstream
// (edge/cloudflare/browsercdp.go, UpstreamWS) and a body that stays open while the
// socket may live. Here the upstream is connected, the client gets the other end of a
// WebSocketPair, and messages are copied both ways unchanged (text stays text, binary
// binary). The end of Go's body (the execution ended) closes both sockets; either
// socket closing cancels Go's body (Go's next heartbeat write fails and it returns).

// What Browser Rendering's clients send as cf-brapi-client (contract §3).
const brapiClient = "@cloudflare/playwright@1.3.0";

// Close codes a socket may send on: others (outside 1000–4999, or the reserved
// 1005/1006/1015 that only describe a connection) become 1011, 1005 (no code) 1000.
function closeCode(code) {
  if (code === 1005) return 1000;
  if (code < 1000 || code > 4999 || code === 1006 || code === 1015) return 1011;
  return code;
}

function upgradedSocket(res, what) {
  if (!res.webSocket) throw new Error(`${what} answered ${res.status} without a websocket`);
  return res.webSocket;
}

async function connectUpstream(spec, env) {
  const upgrade = { Upgrade: "websocket" };
  switch (spec.kind) {
    case "url": // a local chromium standing in for Browser Rendering (local runs only)
      return { ws: upgradedSocket(await fetch(spec.url.replace(/^ws/, "http"), { headers: upgrade }), spec.url) };
    case "browser": {
      if (!env.BROWSER) throw new Error("the BROWSER binding is not bound");
      const headers = { "cf-brapi-client": brapiClient };
      let session = spec.session;
      if (!session) {
        const res = await env.BROWSER.fetch(`https://browser.flare/v1/acquire?keep_alive=${spec.keepAliveMs}`, { headers });
        const text = await res.text();
        if (res.status !== 200) throw new Error(`Browser Rendering's acquire answered ${res.status}: ${text.slice(0, 200)}`);
        session = JSON.parse(text).sessionId;
        if (!session) throw new Error("Browser Rendering's acquire returned no sessionId");
      }
      const res = await env.BROWSER.fetch(`https://browser.flare/v1/devtools/browser/${encodeURIComponent(session)}`, {
        headers: { ...headers, ...upgrade },
      });
      // A session this socket acquired is closed with it; a re-attached one is not.
      return { ws: upgradedSocket(res, "Browser Rendering"), closeBrowser: !spec.session };
    }
    case "sandbox": {
      const ns = env[spec.binding];
      const stub = ns.get(ns.idFromName(spec.name));
      const res = await stub.fetch(`http://sandbox${spec.path}`, {
        headers: { ...upgrade, authorization: `Bearer ${spec.token}`, "x-flare-sandbox": spec.name },
      });
      return { ws: upgradedSocket(res, `the agent of sandbox ${spec.name}`) };
    }
  }
  throw new Error(`unknown websocket upstream ${spec.kind}`);
}

async function webSocketResponse(r, env) {
  const reader = r.body.getReader();
  const release = () => reader.cancel().catch(() => {});
  let up;
  try {
    up = await connectUpstream(JSON.parse(headersFromString(r.headers).get("x-flare-websocket")), env);
  } catch (err) {
    release();
    return Response.json({ error: "browser_unavailable", message: String(err?.message ?? err) }, { status: 502 });
  }
  const [client, server] = Object.values(new WebSocketPair());
  server.accept();
  up.ws.accept();
  let ended = false;
  let resolveEnded;
  const endedP = new Promise((resolve) => (resolveEnded = resolve));
  const end = (code, reason) => {
    if (ended) return;
    ended = true;
    if (up.closeBrowser) {
      try {
        up.ws.send(JSON.stringify({ id: -9999, method: "Browser.close", params: {} }));
      } catch {}
    }
    for (const ws of [server, up.ws]) {
      try {
        ws.close(closeCode(code), reason);
      } catch {}
    }
    release();
    resolveEnded();
  };
  const forward = (to) => (e) => {
    try {
      to.send(e.data);
    } catch (err) {
      end(1011, "send failed");
    }
  };
  server.addEventListener("message", forward(up.ws));
  up.ws.addEventListener("message", forward(server));
  for (const ws of [server, up.ws]) {
    ws.addEventListener("close", (e) => end(e.code, e.reason));
    ws.addEventListener("error", () => end(1011, "socket error"));
  }
  // Go's body: heartbeats until the execution ends.
  (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {}
    end(1000, "the execution ended");
  })();
  // Go's timers (its watch of the execution) run while the socket is open.
  go.keepAwake(endedP);
  return new Response(null, { status: 101, webSocket: client });
}

export default {
  async fetch(request, env, ctx) {
    if (env.FLARE_DEV_ROUTES === "true") {
      const url = new URL(request.url);
      if (url.pathname.startsWith("/__dev/js/")) {
        if (url.pathname === "/__dev/js/dispatch" && request.method === "POST") return devDispatch(request, env);
        return devRoute(url) ?? new Response("not found\n", { status: 404 });
      }
    }
    try {
      const r = await go.call("fetch", [request.method, request.url, headersToString(request.headers), request.body, ctx]);
      if (r.status === 101) return webSocketResponse(r, env);
      return new Response(nullBodyStatus.has(r.status) ? null : r.body, {
        status: r.status,
        headers: headersFromString(r.headers),
      });
    } catch (err) {
      return failure("request", err);
    }
  },

  async scheduled(controller, env, ctx) {
    await go.call("scheduled", [controller.cron, controller.scheduledTime, ctx]);
  },
};

// The Go side keeps one actor per Durable Object instance, keyed by a random id; the
// registry frees it when the instance is garbage collected.
const actorRegistry = new FinalizationRegistry((key) => {
  try {
    go.callSync("actorFree", [key]);
  } catch (err) {
    console.error("flare: actorFree:", err);
  }
});

class ActorObject extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.key = crypto.randomUUID();
    actorRegistry.register(this, this.key);
  }

  // A message to the actor: POST https://actor.flare/<kind>/<key> with the message
  // (actors.Marshal) as body; the answer is the reply (200), none (204) or an error.
  async fetch(request) {
    const path = new URL(request.url).pathname;
    const body = await request.text();
    try {
      const r = await go.call("actorMessage", [this.key, this.ctx, this.constructor.kind, path, body]);
      return new Response(r.status === 204 ? null : r.body, {
        status: r.status,
        headers: { "content-type": "application/json" },
      });
    } catch (err) {
      return failure(`${this.constructor.kind} actor`, err);
    }
  }

  // A rejection makes the runtime retry the alarm (with backoff).
  async alarm() {
    await go.call("actorAlarm", [this.key, this.ctx, this.constructor.kind]);
  }
}

export class RunActor extends ActorObject {
  static kind = "run";
}
export class AdmissionActor extends ActorObject {
  static kind = "admission";
}
export class LeaseActor extends ActorObject {
  static kind = "lease";
}

// LocalAgentProxy stands in for a sandbox container under `wrangler dev`: it forwards
// every request to the agent process at AGENT_URL (the caller names the sandbox in its
// own headers, e.g. X-Flare-Sandbox).
// A request with cf-container-target-port (the Container class's switchPort header) is
// for that port of the sandbox instead (preview URLs): a local agent's commands
// listen on this host's loopback.
export class LocalAgentProxy extends DurableObject {
  async fetch(request) {
    const url = new URL(request.url);
    const port = request.headers.get("cf-container-target-port");
    if (port !== null && !/^[1-9][0-9]{0,4}$/.test(port)) return new Response("bad port\n", { status: 400 });
    const target = new URL(url.pathname + url.search, port ? `http://127.0.0.1:${port}` : env.AGENT_URL);
    const req = new Request(target, request);
    if (port) {
      req.headers.delete("cf-container-target-port");
      req.headers.delete("x-flare-sandbox");
    }
    try {
      return await fetch(req);
    } catch (err) {
      return sandboxFailed(502, "sandbox unreachable", err);
    }
  }
}

// sandboxFailed answers for a sandbox that could not be reached or started, naming
// the cause. A throw would reach the caller as the same error, but workerd would also
// log it as uncaught, with its stack, on this object's thread at every attempt (three
// per failed start under wrangler dev with the agent supervisor stopped); the edge
// reads the status and the text as the start's failure (containers.post).
function sandboxFailed(status, what, err) {
  return new Response(`${what}: ${err?.message ?? err}\n`, { status });
}

// The agent's HTTP port inside the sandbox images (sandbox-images/).
const agentPort = 8080;

// The agent's container. The edge sends it POST /start and POST /cancel (the agent
// protocol, agentapi); a /cancel for a container that is not running is
// answered here, so that stopping a finished attempt does not boot a container.
class AgentContainer extends Container {
  defaultPort = agentPort;
  sleepAfter = "15m";

  async fetch(request) {
    if (new URL(request.url).pathname === "/cancel" && !this.ctx.container?.running) {
      return Response.json({ cancelled: false, running: false });
    }
    try {
      return await super.fetch(request);
    } catch (err) {
      return sandboxFailed(503, "sandbox could not start", err); // e.g. Containers not enabled, image pull failure
    }
  }
}

class LeanSandbox extends AgentContainer {}

class BrowserSandbox extends AgentContainer {}

// Chosen once, at module load: the production config stays unchanged for local runs.
export const RunSandbox = env.AGENT_URL ? class RunSandbox extends LocalAgentProxy {} : LeanSandbox;
export const RunSandboxBrowser = env.AGENT_URL
  ? class RunSandboxBrowser extends LocalAgentProxy {}
  : BrowserSandbox;
