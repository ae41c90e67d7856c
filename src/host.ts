/**
 * Returning to the host: how a loop that still has runnable coroutines lets
 * the host's own callbacks (timers, I/O, worker messages, promise callbacks)
 * run before it steps on.
 *
 * Measured per runtime (Deno 2.9, Node 22, Bun 1.4, Chromium, workerd), one hop costs:
 * `setImmediate` 1–10 µs (Deno, Node, Bun, workerd), a `MessageChannel`
 * message 2–56 µs (Chromium 16–56), `setTimeout(0)` 1–4 ms where it is
 * clamped (browsers, Deno, Node) and 15 µs in workerd, which does not clamp.
 * So `setImmediate` where it exists. Else, in workerd (a compatibility date
 * before Node's globals), `setTimeout(0)`: there, as in Deno 2.9, a loop that
 * hops by `MessageChannel` starves timers (measured: a 5 ms timer had not
 * fired after 5 000 hops, 322 ms). Else (browsers) a `MessageChannel`
 * message, which lets timers run there. `scheduler.yield()` is no option: in
 * Chromium it let a due 10 ms timer fire only after 200 ms.
 * @module
 */

/** Which host return this runtime uses (the portable test runner prints it). */
export const HOST_RETURN: "setImmediate" | "MessageChannel" | "setTimeout" =
  typeof setImmediate === "function"
    ? "setImmediate"
    : typeof MessageChannel === "function" && !isWorkerd()
    ? "MessageChannel"
    : "setTimeout";

/** Resolves once the host has had its turn: its due timers, I/O and messages ran. */
export const toHost: () => Promise<void> = HOST_RETURN === "setImmediate"
  ? () => new Promise<void>((resolve) => setImmediate(resolve))
  : HOST_RETURN === "MessageChannel"
  ? viaMessage
  : () => new Promise<void>((resolve) => setTimeout(resolve, 0));

function isWorkerd(): boolean {
  return typeof navigator === "object" && navigator.userAgent === "Cloudflare-Workers";
}

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
