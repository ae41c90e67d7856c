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
