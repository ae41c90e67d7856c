/**
 * Retry with exponential back-off, tested on virtual time:
 * `deno run examples/retry.ts`.
 *
 * `retry` calls an operation up to 5 times and, after each failure, sleeps
 * 1 s, then 2 s, 4 s, 8 s (doubling, never more than 16 s). A flaky operation
 * that fails 4 times succeeds on the 5th call, 15 s after the first one. On a
 * `new Loop({ clock: "virtual" })` those 15 s take no real time and every time
 * is exact, which is how you test code like this.
 *
 * @module
 */
import { CancelledError, type Coro, Loop, sleep, TimeoutError } from "../mod.ts";

/** How `retry` backs off. */
export interface BackOff {
  /** How many times to call the operation, at most. */
  attempts: number;
  /** The pause after the first failure, in ms; each next pause is twice as long. */
  firstDelayMs: number;
  /** The longest pause, in ms. */
  maxDelayMs: number;
}

/** 5 attempts; pauses of 1 s, 2 s, 4 s, 8 s between them (16 s at most). */
export const BACK_OFF: BackOff = { attempts: 5, firstDelayMs: 1_000, maxDelayMs: 16_000 };

/**
 * Calls `operation()` until it succeeds, at most `backOff.attempts` times,
 * sleeping between attempts; throws the last error if every attempt failed.
 * `operation` makes a fresh coroutine per attempt: a coroutine runs only once,
 * and yielding a failed one again just throws its error again.
 */
export function* retry<T>(
  operation: () => Coro<T>,
  backOff: BackOff = BACK_OFF,
  onFailure: (error: unknown, attempt: number, delayMs: number) => void = () => {},
): Coro<T> {
  let delay = backOff.firstDelayMs;
  for (let attempt = 1;; attempt++) {
    try {
      return yield* operation();
    } catch (error) {
      // Being cancelled or timed out from outside is not a failure to retry:
      // let it through at once, so the work stops.
      if (error instanceof CancelledError || error instanceof TimeoutError) throw error;
      if (attempt >= backOff.attempts) throw error;
      onFailure(error, attempt, delay);
      yield* sleep(delay);
      delay = Math.min(2 * delay, backOff.maxDelayMs);
    }
  }
}

/**
 * A stand-in for a request to a busy server: its first `failures` calls throw,
 * the next ones succeed. `onCall(n)` is told of the n-th call, from 1.
 */
export function flaky(
  failures: number,
  onCall: (call: number) => void = () => {},
): () => Coro<string> {
  let calls = 0;
  return function* request(): Coro<string> {
    const call = ++calls;
    onCall(call);
    yield; // a real request waits here, e.g. `yield fromPromise(fetch(url))`
    if (call <= failures) throw new Error(`server busy (call ${call})`);
    return `200 OK (call ${call})`;
  };
}

if (import.meta.main) {
  const loop = new Loop({ clock: "virtual" });
  const log = (msg: string) => console.log(`${String(loop.now()).padStart(6)} ms  ${msg}`);
  const started = performance.now();
  const result = await loop.run(
    retry(
      flaky(4, (call) => log(`call ${call}`)),
      BACK_OFF,
      (error, attempt, delay) =>
        log(`attempt ${attempt} failed (${(error as Error).message}); retrying in ${delay} ms`),
    ),
  );
  log(result);
  const real = (performance.now() - started).toFixed(1);
  console.log(`${loop.now()} ms of virtual time took ${real} ms of real time.`);
}
