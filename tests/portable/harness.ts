/**
 * Runs, inside Node, Bun, a browser page or workerd, the tests that one test
 * file registered with `test()` (tests/_helper.ts registers them here when
 * `Deno.test` is missing). The runner (tests/portable/run.ts) bundles each
 * portable test file with this module and calls {@linkcode runTests}.
 *
 * Off Deno there are no sanitizers, so this does their most useful part
 * itself: a test that leaves a `setTimeout` or `setInterval` pending, or lets
 * a promise reject unhandled while it runs, fails. (Node and Bun processes
 * must also exit by themselves after their last test: the runner checks that.)
 *
 * @module
 */

import { portableTests } from "../_helper.ts";
import { HOST_RETURN } from "../../src/host.ts";

/** One test's outcome. */
export interface Outcome {
  name: string;
  status: "passed" | "failed" | "skipped";
  ms: number;
  /** failed: the error's stack (or text); skipped: what the runtime lacks. */
  detail?: string;
}

/** What a run of one file's tests reports. */
export interface Report {
  /** The runtime as it names itself (`navigator.userAgent` or a version). */
  runtime: string;
  /** How the loop returns to the host here (src/host.ts). */
  hostReturn: string;
  outcomes: Outcome[];
}

/** A test that has not ended after this long fails, so a hang names its test. */
const TEST_LIMIT_MS = 60_000;

type TimerFn = (callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => unknown;
type ClearFn = (id: unknown) => void;

/** Runs every registered test in order, one at a time. */
export async function runTests(): Promise<Report> {
  const timers = trackTimers();
  // Rejections not handled yet, by promise: one handled later (some runtimes
  // report a rejection before the `await` that handles it) is taken off.
  const unhandled = new Map<Promise<unknown>, unknown>();
  const onUnhandled = (event: Event) => {
    const { promise, reason } = event as unknown as { promise: Promise<unknown>; reason: unknown };
    unhandled.set(promise, reason);
    event.preventDefault();
  };
  const onHandled = (event: Event) => {
    unhandled.delete((event as unknown as { promise: Promise<unknown> }).promise);
  };
  const onNodeUnhandled = (reason: unknown, promise: Promise<unknown>) =>
    unhandled.set(promise, reason);
  const onNodeHandled = (promise: Promise<unknown>) => unhandled.delete(promise);
  const proc = (globalThis as { process?: NodeProcess }).process;
  // Node and Bun report on `process`; browsers and workerd by events.
  const nodeLike = typeof proc?.on === "function";
  if (nodeLike) {
    proc!.on!("unhandledRejection", onNodeUnhandled);
    proc!.on!("rejectionHandled", onNodeHandled);
  } else {
    globalThis.addEventListener("unhandledrejection", onUnhandled);
    globalThis.addEventListener("rejectionhandled", onHandled);
  }
  const outcomes: Outcome[] = [];
  try {
    for (const { name, fn, missing } of portableTests) {
      if (missing.length > 0) {
        outcomes.push({ name, status: "skipped", ms: 0, detail: `needs ${missing.join(", ")}` });
        continue;
      }
      const started = performance.now();
      timers.live.clear();
      unhandled.clear();
      let failure: unknown = undefined;
      let failed = false;
      try {
        await withLimit(Promise.resolve().then(fn), timers.setTimeout, timers.clearTimeout);
      } catch (e) {
        failed = true;
        failure = e;
      }
      // A rejection is reported as unhandled only after the microtasks that
      // could still handle it, and on Node in a later turn: wait one.
      await new Promise((resolve) => timers.setTimeout(resolve, 0));
      if (!failed && timers.live.size > 0) {
        failed = true;
        failure = new Error(
          `the test left ${timers.live.size} timer(s) pending (a setTimeout or setInterval ` +
            `it did not clear)`,
        );
      }
      if (!failed && unhandled.size > 0) {
        failed = true;
        const [reason] = unhandled.values();
        failure = new Error(`a promise rejected unhandled during the test: ${describe(reason)}`);
      }
      for (const id of timers.live) timers.clearTimeout(id); // none leaks into the next test
      outcomes.push({
        name,
        status: failed ? "failed" : "passed",
        ms: performance.now() - started,
        detail: failed ? describe(failure) : undefined,
      });
    }
  } finally {
    timers.restore();
    if (nodeLike) {
      proc!.off!("unhandledRejection", onNodeUnhandled);
      proc!.off!("rejectionHandled", onNodeHandled);
    } else {
      globalThis.removeEventListener("unhandledrejection", onUnhandled);
      globalThis.removeEventListener("rejectionhandled", onHandled);
    }
  }
  return { runtime: runtimeName(), hostReturn: HOST_RETURN, outcomes };
}

interface NodeProcess {
  // deno-lint-ignore no-explicit-any
  on?: (event: string, listener: (...args: any[]) => void) => void;
  // deno-lint-ignore no-explicit-any
  off?: (event: string, listener: (...args: any[]) => void) => void;
  versions?: Record<string, string>;
}

/**
 * Wraps the global timer functions so that the timers a test leaves pending
 * can be seen: `live` holds every timer set and neither fired (setTimeout)
 * nor cleared. The originals are kept for the harness's own timers.
 */
function trackTimers() {
  const g = globalThis as unknown as Record<string, unknown>;
  // Kept as they are, to restore them; called bound, as browsers require.
  const original = {
    setTimeout: g.setTimeout as TimerFn,
    setInterval: g.setInterval as TimerFn,
    clearTimeout: g.clearTimeout as ClearFn,
    clearInterval: g.clearInterval as ClearFn,
  };
  const call = {
    setTimeout: original.setTimeout.bind(globalThis),
    setInterval: original.setInterval.bind(globalThis),
    clearTimeout: original.clearTimeout.bind(globalThis),
    clearInterval: original.clearInterval.bind(globalThis),
  };
  const live = new Set<unknown>();
  g.setTimeout = (callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const id = call.setTimeout(
      (...a: unknown[]) => {
        live.delete(id);
        callback(...a);
      },
      ms,
      ...args,
    );
    live.add(id);
    return id;
  };
  g.setInterval = (callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const id = call.setInterval(callback, ms, ...args);
    live.add(id);
    return id;
  };
  g.clearTimeout = (id: unknown) => {
    live.delete(id);
    call.clearTimeout(id);
  };
  g.clearInterval = (id: unknown) => {
    live.delete(id);
    call.clearInterval(id);
  };
  return {
    live,
    setTimeout: call.setTimeout,
    clearTimeout: (id: unknown) => {
      call.clearTimeout(id);
      call.clearInterval(id);
    },
    restore: () => Object.assign(g, original),
  };
}

function withLimit(
  work: Promise<unknown>,
  setTimer: TimerFn,
  clearTimer: ClearFn,
): Promise<unknown> {
  let id: unknown;
  const limit = new Promise((_, reject) => {
    id = setTimer(
      () => reject(new Error(`the test did not end within ${TEST_LIMIT_MS} ms`)),
      TEST_LIMIT_MS,
    );
  });
  return Promise.race([work, limit]).finally(() => clearTimer(id));
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    return e.stack?.includes(e.message) ? e.stack : `${e.name}: ${e.message}\n${e.stack}`;
  }
  return String(e);
}

function runtimeName(): string {
  const g = globalThis as { Bun?: { version: string }; process?: NodeProcess };
  const agent = typeof navigator === "object" ? navigator.userAgent ?? "" : "";
  if (g.Bun) return `Bun ${g.Bun.version}`;
  if (agent === "Cloudflare-Workers") return "workerd";
  if (g.process?.versions?.node) return `Node ${g.process.versions.node}`;
  const chrome = agent.match(/(HeadlessChrome|Chrome)\/([\d.]+)/);
  return chrome ? `Chromium ${chrome[2]}` : agent || "unknown";
}
