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
import wasmModule from "../../build/app.wasm";
import { GoRuntime, GoRuntimeDied } from "./runtime.js";

const go = new GoRuntime(wasmModule, env);

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
export class LocalAgentProxy extends DurableObject {
  async fetch(request) {
    const url = new URL(request.url);
    const target = new URL(url.pathname + url.search, env.AGENT_URL);
    return fetch(new Request(target, request));
  }
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
    return super.fetch(request);
  }
}

class LeanSandbox extends AgentContainer {}

class BrowserSandbox extends AgentContainer {}

// Chosen once, at module load: the production config stays unchanged for local runs.
export const RunSandbox = env.AGENT_URL ? class RunSandbox extends LocalAgentProxy {} : LeanSandbox;
export const RunSandboxBrowser = env.AGENT_URL
  ? class RunSandboxBrowser extends LocalAgentProxy {}
  : BrowserSandbox;
