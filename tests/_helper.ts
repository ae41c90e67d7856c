import { enableInvariantChecks } from "../src/invariants.ts";
import assert from "node:assert/strict";
import { type Coro, sleep } from "../mod.ts";

// Every test checks the loop's invariants whenever a driver comes to rest.
enableInvariantChecks();

/**
 * What a test needs beyond the core, where some runtime lacks it. A test that
 * names one runs only where it is there; elsewhere the portable runner counts
 * it as skipped and says why (tests/portable/run.ts).
 * - `deno`: Deno's own APIs (`Deno.serve`, …).
 * - `threads`: `runInThread` and `ThreadPool` work (Deno and Bun Workers, Node's
 *   `worker_threads`, Web Workers on a cross-origin isolated page; not workerd).
 * - `cpuUsage`: `process.cpuUsage()` (Deno, Node, Bun).
 */
export type Need = "deno" | "threads" | "cpuUsage";

const HAS: Record<Need, () => boolean> = {
  deno: () => "Deno" in globalThis,
  threads: () =>
    "Deno" in globalThis || "Bun" in globalThis ||
    typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions
            ?.node === "string" && !isWorkerd() ||
    typeof Worker === "function" &&
      (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
  cpuUsage: () => {
    try {
      // workerd's `process` has the method, but it throws "not implemented".
      (globalThis as { process?: { cpuUsage(): unknown } }).process?.cpuUsage();
      return "process" in globalThis;
    } catch {
      return false;
    }
  },
};

function isWorkerd(): boolean {
  return typeof navigator === "object" && navigator.userAgent === "Cloudflare-Workers";
}

/** A test registered where `Deno.test` does not exist, for tests/portable/harness.ts to run. */
export interface PortableTest {
  name: string;
  fn: () => void | Promise<void>;
  /** What this runtime lacks of the test's needs; the test is skipped unless empty. */
  missing: Need[];
}

/** The tests registered off Deno, in the order they were declared. */
export const portableTests: PortableTest[] = [];

/**
 * The one way tests are declared here. On Deno: `Deno.test` with every
 * sanitizer on (Deno 2.9 leaves `sanitizeOps` off by default), so no test
 * leaves a timer, a pending op or a resource behind. Elsewhere (Node, Bun,
 * browsers, workerd) the test is registered in {@linkcode portableTests}.
 */
export function test(name: string, fn: () => void | Promise<void>): void;
/** A test that runs only where `needs` are met (see {@linkcode Need}). */
export function test(name: string, needs: Need[], fn: () => void | Promise<void>): void;
export function test(
  name: string,
  needsOrFn: Need[] | (() => void | Promise<void>),
  maybeFn?: () => void | Promise<void>,
): void {
  const [needs, fn] = typeof needsOrFn === "function" ? [[], needsOrFn] : [needsOrFn, maybeFn!];
  const missing = needs.filter((need) => !HAS[need]());
  if ("Deno" in globalThis && typeof Deno.test === "function") {
    Deno.test({
      name,
      fn,
      ignore: missing.length > 0,
      sanitizeOps: true,
      sanitizeResources: true,
      sanitizeExit: true,
    });
  } else {
    portableTests.push({ name, fn, missing });
  }
}

/** Runs `fn` with `console.warn` captured; returns what it printed. */
export async function captureWarnings(fn: () => Promise<unknown>): Promise<string[]> {
  const warnings: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.map(String).join(" "));
  try {
    await fn();
  } finally {
    console.warn = original;
  }
  return warnings;
}

/** Resolves after `ms` real milliseconds; rejects with the reason when `signal` aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const id = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(id);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A `deno run` of a script in a child process, its output collected as it comes, for tests
 * that send it signals. `await using` it: disposing kills it if it still runs and waits until
 * it has exited and both of its streams are read to the end.
 */
export class Script implements AsyncDisposable {
  /** What it printed so far. */
  stdout = "";
  stderr = "";
  /** Set once it has exited. */
  exited = false;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  readonly #started = performance.now();
  readonly #read: Promise<void>;
  #streamsEnded = false;
  #wake = () => {};
  #changed = new Promise<void>((resolve) => this.#wake = resolve);

  /** Runs `deno run ...flags path ...args`, without colours. */
  constructor(path: URL, args: string[] = [], flags: string[] = []) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...flags, path.pathname, ...args],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.#child.status.then((status) => {
      this.exited = true;
      return status;
    });
    this.#read = Promise.all([
      this.#collect(this.#child.stdout, "stdout"),
      this.#collect(this.#child.stderr, "stderr"),
    ]).then(() => {
      this.#streamsEnded = true;
      this.#notify();
    });
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Milliseconds since it was started. */
  elapsed(): number {
    return performance.now() - this.#started;
  }

  /** Sends it `signal`. */
  kill(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Resolves with the first match of `pattern` in `stream`; fails after `ms` or at its end. */
  async waitFor(
    stream: "stdout" | "stderr",
    pattern: RegExp,
    ms = 20_000,
  ): Promise<RegExpMatchArray> {
    const deadline = performance.now() + ms;
    for (;;) {
      const match = this[stream].match(pattern);
      if (match !== null) return match;
      const left = deadline - performance.now();
      if (this.#streamsEnded || left <= 0) {
        const why = this.#streamsEnded ? "it ended first" : `not within ${ms} ms`;
        throw new Error(
          `the script did not print ${pattern} on ${stream} (${why}).\n` + this.output(),
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#changed,
        new Promise((resolve) => timer = setTimeout(resolve, left)),
      ]);
      clearTimeout(timer);
    }
  }

  /** Waits for it to exit, at most `ms` (then kills it and fails); resolves with its status. */
  async finish(ms = 20_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
    const status = await Promise.race([this.status, late]);
    clearTimeout(timer);
    if (status === "late") {
      await this[Symbol.asyncDispose]();
      throw new Error(`the script was still running after ${ms} ms.\n` + this.output());
    }
    await this.#read;
    return status;
  }

  /** Both of its streams, for failure messages. */
  output(): string {
    return `--- stdout:\n${this.stdout}--- stderr:\n${this.stderr}---`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.exited) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // it exited meanwhile
      }
    }
    await this.status;
    await this.#read;
  }

  async #collect(stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr"): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      this[key] += text;
      this.#notify();
    }
  }

  #notify(): void {
    this.#wake();
    this.#changed = new Promise<void>((resolve) => this.#wake = resolve);
  }
}

/** Sleeps `ms` on its loop's clock, then returns `x`. */
export function* after<T>(ms: number, x: T): Coro<T> {
  yield sleep(ms);
  return x;
}

/** Sleeps `ms` and logs how it ended: "done", or the name of the error thrown in. */
export function* logged(name: string, ms: number, log: string[]): Coro<string> {
  try {
    yield sleep(ms);
    log.push(`${name} done`);
    return name;
  } catch (e) {
    log.push(`${name} ${(e as Error).name}`);
    throw e;
  }
}

/** What `promise`, which must reject, rejects with. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected the run to reject");
}
