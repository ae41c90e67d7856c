/**
 * `main`: the entry point for scripts. It runs a coroutine on a new loop and
 * turns the signals that stop a script (Ctrl-C) into an orderly cancellation:
 * every coroutine gets its `CancelledError`, every `finally` runs, then the
 * process exits with the code a shell expects.
 *
 * Two facts shape it (both measured in Deno 2.9):
 * a signal listener replaces Deno's default kill on Ctrl-C, and no listener
 * of the loop's thread can run while a coroutine blocks that thread in
 * synchronous code. So a listener alone would make a blocked script
 * unstoppable. On Deno, a watchdog Worker, which has signal listeners of its
 * own that still run while the loop's thread is blocked, tells a blocked
 * thread from a busy one and says how to end the process, or ends it.
 *
 * @module
 */

import { CancelledError } from "./errors.ts";
import { type Coro, isCoro } from "./coro.ts";
import { Loop } from "./loop.ts";
import { describe } from "./messages.ts";
import { formatSnapshot } from "./snapshot.ts";

/** The exit code after a signal: 128 + its number, as shells report a process a signal ended. */
const EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGBREAK: 149 };

/**
 * How long the watchdog waits for the loop's thread to answer after a
 * signal before it calls the thread blocked. The thread answers between two
 * slices of the loop (every few milliseconds) when it is not blocked; the
 * margin is for a loaded machine.
 */
const GRACE_MS = 500;

/** What `main` needs of the runtime: its stopping signals, listeners for them, and exit. */
interface Host {
  /** The signals that ask a script to stop here. */
  signals: readonly string[];
  listen(signal: string, listener: () => void): void;
  unlisten(signal: string, listener: () => void): void;
  exit(code: number): void;
  /** Deno only: starts the watchdog; resolves with the function that stops it. */
  watchdog?(signals: readonly string[]): Promise<(() => void) | undefined>;
}

/** The part of Node's and Bun's `process` that `main` uses. */
interface NodeProcess {
  platform: string;
  on(signal: string, listener: () => void): unknown;
  off(signal: string, listener: () => void): unknown;
  exit(code: number): void;
}

/** The runtime's signals, or `undefined` where there are none (browsers, workerd). */
function signalHost(): Host | undefined {
  if (typeof Deno === "object" && typeof Deno.addSignalListener === "function") {
    return {
      // Deno can listen only to SIGINT and SIGBREAK on Windows.
      signals: Deno.build.os === "windows" ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"],
      listen: (signal, listener) => Deno.addSignalListener(signal as Deno.Signal, listener),
      unlisten: (signal, listener) => Deno.removeSignalListener(signal as Deno.Signal, listener),
      exit: (code) => Deno.exit(code),
      watchdog: startWatchdog,
    };
  }
  const process = (globalThis as { process?: NodeProcess }).process;
  if (typeof process?.on === "function" && typeof process.exit === "function") {
    return {
      signals: process.platform === "win32" ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"],
      listen: (signal, listener) => process.on(signal, listener),
      unlisten: (signal, listener) => process.off(signal, listener),
      exit: (code) => process.exit(code),
    };
  }
  return undefined;
}

/** True while a `main` runs: two would both exit on a signal, each cutting the other's cleanup. */
let mainRunning = false;

/**
 * Runs a script's coroutine on a new real-clock {@linkcode Loop} and resolves
 * with its result; `coro` is a coroutine or a function that makes one.
 *
 * - The first SIGINT (Ctrl-C) or SIGTERM (SIGINT or SIGBREAK on Windows)
 *   cancels the run as an aborted `signal` would: every coroutine gets a
 *   `CancelledError` (its `cause` an `AbortError` naming the signal), every
 *   `finally` runs; then the process exits with 130 (SIGINT), 143 (SIGTERM)
 *   or 149 (SIGBREAK). Errors raised while cleaning up are printed first.
 * - A second signal during that cleanup prints what is still running to
 *   stderr and exits at once, with the same code; a third exits without
 *   printing.
 * - A run that fails prints its error (with its stack; an `AggregateError`
 *   with its errors) to stderr and exits with code 1.
 * - A run that succeeds resolves with its value and leaves the process as it
 *   was: no signal listener left, nothing keeping it alive, no exit. While
 *   the run lasts the process stays alive, also with nothing pending (a
 *   script may wait for Ctrl-C).
 *
 * On Deno a watchdog Worker (from a `blob:` URL: no permission needed) keeps a
 * script that blocks its thread in synchronous code stoppable: the first
 * signal while the thread is blocked prints that it is blocked and how to end
 * the process; with `--allow-run`, a second signal while it is blocked kills
 * the process. `main` waits for the watchdog to listen (about 20 ms) before it
 * starts `coro`. Node and Bun get the signals but no watchdog; where there are
 * no signals (browsers, workerd) `main` runs `coro`, prints a failure to the
 * console and rejects with it. One `main` runs at a time.
 *
 * Bad input rejects at once: a `TypeError` for something that is not a
 * coroutine (or a function that returns one) or a non-boolean
 * `exceptionGroup`; an `Error` while another `main` runs.
 *
 * @example A script: stop it with Ctrl-C and every `finally` runs
 * ```ts
 * import { type Coro, main, sleep } from "@tinyio/core";
 *
 * function* count(to: number): Coro<number> {
 *   let n = 0;
 *   try {
 *     for (; n < to; n++) yield sleep(1);
 *   } finally {
 *     console.log(`counted to ${n}`); // also after Ctrl-C
 *   }
 *   return n;
 * }
 * const n = await main(count(3));
 * console.assert(n === 3);
 * ```
 */
export async function main<T>(
  coro: Coro<T> | (() => Coro<T>),
  options?: { exceptionGroup?: boolean },
): Promise<T> {
  const exceptionGroup = options?.exceptionGroup;
  if (exceptionGroup !== undefined && typeof exceptionGroup !== "boolean") {
    throw new TypeError(
      `main(coro, { exceptionGroup }): exceptionGroup is ${describe(exceptionGroup)}; ` +
        "give true, false or leave it out.",
    );
  }
  const root = typeof coro === "function" ? coro() : coro;
  if (!isCoro(root)) throw new TypeError(notACoroutine(coro, root));
  if (mainRunning) {
    throw new Error(
      "main() is already running: it is the entry point of a script, called once. Inside it, " +
        "yield the coroutine (`yield other()`); elsewhere, run it on its own `new Loop().run(c)`.",
    );
  }
  const host = signalHost();
  if (host === undefined) {
    return await new Loop().run(root, { exceptionGroup }).catch((error) => {
      console.error("main: the run failed:");
      console.error(error);
      throw error;
    });
  }
  mainRunning = true;
  try {
    return await runScript(host, root, exceptionGroup);
  } finally {
    mainRunning = false;
  }
}

/** The message for a `main` argument that is no coroutine (`made` is what a function returned). */
function notACoroutine(coro: unknown, made: unknown): string {
  const promise = typeof (made as { then?: unknown })?.then === "function";
  const fix = promise
    ? " main runs coroutines (`function*`), not async functions: wrap a promise in a " +
      "coroutine, `main(fromPromise(p))`, or await it without main."
    : "";
  return typeof coro === "function"
    ? `main(f): f returned ${describe(made)}, not a coroutine.${fix} Give the coroutine, ` +
      "`main(app())`, or a function that returns one, `main(app)` for `function* app()`."
    : `main() takes a coroutine, such as main(app()) for \`function* app()\`, or a function ` +
      `that returns one; got ${describe(coro)}.${fix}`;
}

/** Runs `root` with `host`'s signals turned into a cancellation, then exits or resolves. */
async function runScript<T>(
  host: Host,
  root: Coro<T>,
  exceptionGroup: boolean | undefined,
): Promise<T> {
  const loop = new Loop();
  const abort = new AbortController();
  let stopping: { signal: string; code: number; at: number; reported: boolean } | undefined;

  const onSignal = (signal: string) => {
    if (stopping === undefined) {
      stopping = { signal, code: EXIT_CODES[signal], at: performance.now(), reported: false };
      const again = signal === "SIGINT" ? "press Ctrl-C again" : `send ${signal} again`;
      console.error(
        `main: ${signal}: cancelling every coroutine so that their finally blocks run; ` +
          `${again} to exit without waiting.`,
      );
      abort.abort(new DOMException(`main() received ${signal}`, "AbortError"));
    } else if (!stopping.reported) {
      stopping.reported = true;
      const { code } = stopping;
      stillRunning(loop, signal, code, performance.now() - stopping.at)
        .then(
          (text) => console.error(text),
          (error) => console.error("main: cannot list what is still running:", error),
        )
        .finally(() => host.exit(code));
    } else {
      host.exit(stopping.code); // a third signal: the report did not come
    }
  };
  const listeners = host.signals.map((signal) => [signal, () => onSignal(signal)] as const);
  for (const [signal, listener] of listeners) host.listen(signal, listener);
  // The process waits for the run, as asyncio.run and trio.run do, even with nothing pending
  // (coroutines that wait for an Event or sleep(Infinity) until Ctrl-C): an idle loop holds no
  // timer, and Node would end the process, Deno fail the top-level await.
  const keepAlive = setInterval(() => {}, 1 << 30);
  let stopWatchdog: (() => void) | undefined;
  try {
    // Before the run starts, so that the coroutine cannot block the thread unwatched.
    stopWatchdog = await host.watchdog?.(host.signals);
    const value = await loop.run(root, { signal: abort.signal, exceptionGroup });
    if (stopping !== undefined) host.exit(stopping.code); // finished before the abort took hold
    return value;
  } catch (error) {
    const reason = abort.signal.reason;
    if (stopping !== undefined && (error === reason || leads(error, reason))) {
      const errors = leads(error, reason) ? (error as AggregateError).errors.slice(1) : [];
      const raised = errors.filter((e) => !(e instanceof CancelledError));
      if (raised.length > 0) console.error(`main: errors raised while cleaning up:`);
      for (const e of raised) console.error(e);
      host.exit(stopping.code);
    } else {
      // The run failed on its own (also when a signal came during its cleanup).
      console.error("main: the run failed:");
      console.error(error);
      host.exit(1);
    }
    throw error; // where exit returns (never on Deno or Node)
  } finally {
    for (const [signal, listener] of listeners) host.unlisten(signal, listener);
    stopWatchdog?.();
    clearInterval(keepAlive);
  }
}

/** True if `error` is an `AggregateError` whose first error is `reason`. */
function leads(error: unknown, reason: unknown): boolean {
  return error instanceof AggregateError && error.errors[0] === reason;
}

/**
 * What `main` prints on a second signal: what is still running, as
 * `formatSnapshot` draws it (names and lines with `--allow-sys`). A snapshot
 * that takes over a second (an inspector that does not answer) is left out:
 * the process must exit all the same.
 */
async function stillRunning(
  loop: Loop,
  signal: string,
  code: number,
  cleanupMs: number,
): Promise<string> {
  const header = `main: ${signal} after ${(cleanupMs / 1000).toFixed(1)} s of cleanup: exiting ` +
    `with code ${code} without waiting for the rest; the coroutines still running are stopped ` +
    "where they are, and the finally blocks that have not run will not run.";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) =>
    timer = setTimeout(() => resolve(undefined), 1_000)
  );
  try {
    const infos = await Promise.race([loop.snapshot(), late]);
    return infos === undefined
      ? `${header}\n(what is still running could not be listed within a second)`
      : `${header} Still running:\n${formatSnapshot(infos)}`;
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// The watchdog (Deno only).

/**
 * Starts the watchdog Worker and resolves once it listens, with the function
 * that stops it (an idle Deno Worker keeps the process alive), or with
 * `undefined` if it cannot start.
 *
 * How it tells "blocked" from "busy": on each signal the worker posts the
 * signal's number to this thread and waits {@link GRACE_MS} for it to come
 * back. This thread echoes it from the worker's message handler, which runs
 * between two slices of the loop as a signal listener would — unless the
 * thread is blocked. (A count of this thread's own signal listener calls
 * would not do: Deno delivers the signals that arrived while a thread was
 * blocked as one call, measured, so the counts would drift apart for good.)
 */
function startWatchdog(signals: readonly string[]): Promise<(() => void) | undefined> {
  const url = URL.createObjectURL(
    new Blob([`(${watchdog.toString()})();\n`], { type: "text/javascript" }),
  );
  let worker: Worker;
  try {
    worker = new Worker(url, { type: "module" });
  } catch {
    URL.revokeObjectURL(url);
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    worker.onmessage = ({ data }) => {
      if (typeof data === "number") return worker.postMessage(data); // not blocked
      URL.revokeObjectURL(url);
      resolve(() => worker.terminate());
    };
    worker.onerror = (event) => {
      event.preventDefault(); // run without it rather than fail the script
      URL.revokeObjectURL(url);
      worker.terminate();
      resolve(undefined);
    };
    worker.postMessage({ signals, graceMs: GRACE_MS });
  });
}

/** The watchdog Worker's module (sent as source text, so it uses nothing from outside). */
function watchdog(): void {
  const scope = globalThis as unknown as {
    onmessage: (event: MessageEvent) => void;
    postMessage(message: unknown): void;
  };
  let seen = 0; // signals received
  let answered = 0; // the highest signal number the loop's thread sent back
  scope.onmessage = ({ data }) => {
    if (typeof data === "number") {
      answered = Math.max(answered, data);
      return;
    }
    const { signals, graceMs } = data as { signals: Deno.Signal[]; graceMs: number };
    for (const signal of signals) {
      Deno.addSignalListener(signal, () => {
        const n = ++seen;
        scope.postMessage(n);
        setTimeout(() => {
          if (answered >= n) return; // the loop's thread acts on it
          const canKill = Deno.permissions.querySync({ name: "run" }).state === "granted";
          if (n >= 2 && canKill) {
            console.error(
              `main: ${signal} again while the loop's thread is blocked in synchronous code: ` +
                "killing the process (SIGKILL); the finally blocks that have not run will not run.",
            );
            return Deno.kill(Deno.pid, "SIGKILL");
          }
          const kill = Deno.build.os === "windows"
            ? `taskkill /F /PID ${Deno.pid}`
            : `kill -9 ${Deno.pid}`;
          console.error(
            `main: the loop's thread is blocked in synchronous code (a coroutine that computes ` +
              `without yielding, or an endless loop), so it acts on ${signal} only once that ` +
              "code returns. " +
              (canKill
                ? `Send ${signal} again to kill the process now (its finally blocks will not run).`
                : `To end the process now: ${kill} (or run the script with --allow-run, and a ` +
                  `second ${signal} ends it).`),
          );
        }, graceMs);
      });
    }
    scope.postMessage("listening");
  };
}
