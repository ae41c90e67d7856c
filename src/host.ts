/**
 * Returning to the host: how a loop that still has runnable coroutines lets
 * the host's own callbacks (timers, I/O, worker messages, promise callbacks)
 * run before it steps on.
 *
 * Measured per runtime (PLATFORM-NOTES, "Other runtimes"), one hop costs:
 * `setImmediate` 1–10 µs (Deno, Node, Bun, workerd), a `MessageChannel`
 * message 2–56 µs (everywhere), `setTimeout(0)` 1–4 ms (clamped). So
 * `setImmediate` where it exists; else (browsers, workerd without Node's
 * globals) a message through a `MessageChannel`. Not the other way round: in
 * Deno 2.9 a loop that hops by `MessageChannel` starves timers completely.
 * `scheduler.yield()` is no option either: in Chromium it let a due 10 ms
 * timer fire only after 200 ms.
 *
 * @module
 */

/** Which host return this runtime uses (the portable test runner prints it). */
export const HOST_RETURN: "setImmediate" | "MessageChannel" = typeof setImmediate === "function"
  ? "setImmediate"
  : "MessageChannel";

/** Resolves once the host has had its turn: its due timers, I/O and messages ran. */
export const toHost: () => Promise<void> = HOST_RETURN === "setImmediate"
  ? () => new Promise<void>((resolve) => setImmediate(resolve))
  : viaMessage;

// A channel of its own for every hop, closed once it delivered: a hop is made
// at most every few milliseconds, so creating one costs nothing that shows,
// and nothing is left between runs (no port that keeps a process alive, and
// none that Cloudflare Workers would refuse to use from a later request than
// the one that made it).
function viaMessage(): Promise<void> {
  return new Promise<void>((resolve) => {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {
      port1.close();
      resolve();
    };
    port2.postMessage(null);
  });
}
