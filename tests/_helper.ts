import { enableInvariantChecks } from "../src/invariants.ts";

// Every test checks the loop's invariants whenever a driver comes to rest.
enableInvariantChecks();

/**
 * The one way tests are declared here: `Deno.test` with every sanitizer on
 * (Deno 2.9 leaves `sanitizeOps` off by default), so no test leaves a timer,
 * a pending op or a resource behind.
 */
export function test(name: string, fn: () => void | Promise<void>): void {
  Deno.test({ name, fn, sanitizeOps: true, sanitizeResources: true, sanitizeExit: true });
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
