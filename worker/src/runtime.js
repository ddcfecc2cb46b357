// The one long-lived Go runtime of this isolate.
//
// The Go program (edge/cloudflare/cmd/worker) is instantiated once, on first use, and
// then serves every request, scheduled event and Durable Object of the isolate. It
// registers its entry points on a binding object and calls context.ready(); each call
// from here passes the resolve and reject functions of a promise that Go settles from
// a goroutine. If the Go program exits or traps, every pending call is rejected at once
// (nothing hangs) and the next call starts a fresh instance.
//
// wasm_exec.js (copied from the Go release that built app.wasm by worker/build.sh)
// defines globalThis.Go; it is used unpatched. Go's syscall/js sees globalThis, where
// `context` is set below before each instance starts: {env, binding, ready, sqlBatch}.
// syumai/workers' D1, KV and R2 packages read env from the same place.

import "../../build/wasm_exec.js";

/** Error for calls that failed because the Go runtime died. */
export class GoRuntimeDied extends Error {
  constructor(message, cause) {
    super(message, { cause });
    this.name = "GoRuntimeDied";
  }
}

// sqlBatch runs statements ([sql, ...params] arrays) in one transaction of a Durable
// Object's SQLite storage. It lives in JavaScript because only a thrown JavaScript
// exception rolls transactionSync back, and Go callbacks cannot throw.
function sqlBatch(storage, batch) {
  storage.transactionSync(() => {
    for (const [query, ...params] of batch) storage.sql.exec(query, ...params);
  });
}

// Live JavaScript references held by Go above which a call first runs Go's GC.
const gcRefs = 20000;

// How often a pending call checks for an overdue Go timer (see Instance.pump).
const pumpMs = 100;

class Instance {
  constructor(module, env, generation) {
    this.generation = generation;
    this.dead = null; // the error that killed it
    this.pending = new Set(); // reject functions of calls in flight
    this.binding = {};
    this.calls = 0;
    const go = new globalThis.Go();
    this.go = go;
    if (typeof go._resume !== "function") {
      throw new Error("wasm_exec.js has no Go._resume: update worker/src/runtime.js for this Go release");
    }
    // Death is detected synchronously, in whatever request is running when it
    // happens: workerd cancels promise continuations of a request that has finished,
    // so the promise go.run returns (created by the request that started this
    // instance) cannot be relied on to report an exit later.
    // An exit: os.Exit, or a panic no goroutine recovered.
    go.exit = (code) => this.kill(new GoRuntimeDied(`go runtime exited with code ${code}`));
    // A trap (or any exception) while Go runs leaves the instance unusable.
    const resume = go._resume.bind(go);
    go._resume = () => {
      try {
        resume();
      } catch (err) {
        this.kill(new GoRuntimeDied(`go runtime trapped: ${err}`, err));
        throw err;
      }
    };
    this.trackTimeouts(go);
    let ready;
    this.ready = new Promise((resolve, reject) => {
      ready = resolve;
      this.failStart = reject;
    });
    const waitUntil = (ec, promise) => {
      ec.waitUntil(promise);
      this.pumpUntil(promise);
    };
    globalThis.context = { env, binding: this.binding, ready: () => ready(), sqlBatch, waitUntil };
    const wasm = new WebAssembly.Instance(module, go.importObject);
    go.run(wasm).catch((err) => this.kill(new GoRuntimeDied(`go runtime failed: ${err}`, err)));
  }

  // Go's timers (time.Sleep, timeouts, the runtime's own) wake it through one
  // setTimeout, armed in whatever request was running when Go last went idle. workerd
  // drops the timers of a request once it has completed (Durable Objects keep
  // theirs), and Go re-arms its timeout only when the deadline changes: a goroutine
  // waiting on a timer could then sleep until some other event arrived. So the
  // deadlines are tracked here, and every call still pending (its request is alive)
  // pumps: if a deadline has passed, it resumes Go, which runs the due timers and
  // arms a fresh timeout in the live request.
  trackTimeouts(go) {
    this.due = new Map(); // Go timeout id → due time (ms)
    const imports = go.importObject.gojs;
    const schedule = imports["runtime.scheduleTimeoutEvent"];
    const clear = imports["runtime.clearTimeoutEvent"];
    if (!schedule || !clear) {
      throw new Error("wasm_exec.js has no scheduleTimeoutEvent: update worker/src/runtime.js for this Go release");
    }
    // Arguments sit in Go's stack at sp: the delay (int64) at sp+8, the returned id
    // (int32) at sp+16; clearTimeoutEvent's id at sp+8.
    imports["runtime.scheduleTimeoutEvent"] = (sp) => {
      schedule(sp);
      sp >>>= 0;
      const delay = go.mem.getUint32(sp + 8, true) + go.mem.getInt32(sp + 12, true) * 4294967296;
      this.due.set(go.mem.getInt32(sp + 16, true), Date.now() + delay);
    };
    imports["runtime.clearTimeoutEvent"] = (sp) => {
      clear(sp);
      this.due.delete(go.mem.getInt32((sp >>> 0) + 8, true));
    };
  }

  // wakeIfOverdue resumes Go when one of its timeouts is due and has not fired.
  wakeIfOverdue() {
    if (this.dead || this.due.size === 0) return;
    const now = Date.now();
    for (const [id, at] of this.due) {
      if (at <= now) {
        this.due.delete(id);
        this.go._resume();
        return;
      }
    }
  }

  // pump runs in the context of the request that calls it, until stop() is called.
  pump() {
    let timer = null;
    let stopped = false;
    const tick = () => {
      if (stopped || this.dead) return;
      this.wakeIfOverdue();
      timer = setTimeout(tick, pumpMs);
    };
    timer = setTimeout(tick, pumpMs);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  pumpUntil(promise) {
    const stop = this.pump();
    promise.then(stop, stop);
  }

  kill(err) {
    if (this.dead) return;
    this.dead = err;
    console.error(`flare: Go runtime #${this.generation} died: ${err.message}`);
    this.failStart(err);
    for (const reject of this.pending) reject(err); // their pumps stop at the next tick
    this.pending.clear();
  }

  // Go releases its references to JavaScript values (requests, streams, responses)
  // only when its garbage collector runs, and Go's small heap rarely triggers it:
  // collect when Go holds many references, so JavaScript memory stays bounded.
  collectIfNeeded() {
    if (++this.calls % 64 !== 0) return;
    const refs = this.go._values.length - this.go._idPool.length;
    if (refs > gcRefs) this.binding.gc?.();
  }

  // call invokes an asynchronous Go entry point: fn(resolve, reject, ...args).
  call(name, args) {
    if (this.dead) return Promise.reject(this.dead);
    this.collectIfNeeded();
    const fn = this.binding[name];
    if (typeof fn !== "function") return Promise.reject(new Error(`go runtime has no entry point ${name}`));
    return new Promise((resolve, reject) => {
      this.pending.add(reject);
      const stopPump = this.pump();
      const done = (settle) => (v) => {
        stopPump();
        this.pending.delete(reject);
        settle(v);
      };
      try {
        fn(done(resolve), done(reject), ...args);
      } catch (err) {
        // Go entry points never throw; an exception means the runtime is broken.
        stopPump();
        this.pending.delete(reject);
        this.kill(new GoRuntimeDied(`go runtime threw: ${err}`, err));
        reject(this.dead);
      }
    });
  }
}

export class GoRuntime {
  constructor(module, env) {
    this.module = module;
    this.env = env;
    this.current = null;
    this.generation = 0;
    this.starting = null;
  }

  /** The live instance, started on first use and again after one died. */
  async instance() {
    if (this.current && !this.current.dead) return this.current;
    if (!this.starting) {
      this.starting = (async () => {
        try {
          const inst = new Instance(this.module, this.env, ++this.generation);
          await inst.ready;
          this.current = inst;
          return inst;
        } finally {
          this.starting = null;
        }
      })();
    }
    return this.starting;
  }

  /** Calls an asynchronous Go entry point with args; rejects if the runtime dies. */
  async call(name, args) {
    const inst = await this.instance();
    return inst.call(name, args);
  }

  /** Keeps Go's timers ticking in the calling request until promise settles. */
  keepAwake(promise) {
    const inst = this.current;
    if (inst && !inst.dead) inst.pumpUntil(promise);
  }

  /** Calls a synchronous Go entry point on the live instance, if there is one. */
  callSync(name, args, generation) {
    const inst = this.current;
    if (!inst || inst.dead || (generation !== undefined && inst.generation !== generation)) return undefined;
    return inst.binding[name]?.(...args);
  }

  /** Figures about the runtime for the dev routes. */
  stats() {
    const inst = this.current;
    return {
      generation: this.generation,
      alive: !!inst && !inst.dead,
      pending: inst ? inst.pending.size : 0,
      // JavaScript values Go holds references to: grows if Go leaks js.Values.
      jsRefs: inst && !inst.dead ? inst.go._values.length - inst.go._idPool.length : null,
      go: inst && !inst.dead ? inst.binding.stats?.() : null,
    };
  }
}
