/**
 * What a test needs beyond the core, where some runtime lacks it. A test that
 * names one runs only where it is there; elsewhere the portable runner counts
 * it as skipped and says why (tests/portable/run.ts).
 * - `deno`: Deno's own APIs (`Deno.serve`, …).
 * - `threads`: `runInThread` and `ThreadPool` work (Deno and Bun Workers).
 * - `cpuUsage`: `process.cpuUsage()` (Deno, Node, Bun).
 */
export type Need = "deno" | "threads" | "cpuUsage";

const HAS: Record<Need, () => boolean> = {
  deno: () => "Deno" in globalThis,
  threads: () => "Deno" in globalThis || "Bun" in globalThis,
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
