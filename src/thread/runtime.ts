/**
 * The runtime adapter: how a pool starts a worker and talks to it on the
 * runtime it finds itself on, chosen when a worker starts.
 *
 * - Deno, Bun and browsers: a Web Worker, a module loaded from a `blob:` URL
 *   (no read permission needed). On Deno its options may carry permissions.
 *
 * @module
 */

import type { Protocol } from "./protocol.ts";
import { workerSource } from "./worker.ts";

/** A worker as a pool's thread sees it, on any runtime. */
export interface WorkerLink {
  /** Posts a message; throws (a `DataCloneError`) if something in it cannot be cloned. */
  post(message: unknown[]): void;
  /** Whether the worker may keep the process alive: a busy one yes, an idle one no. */
  keepAlive(busy: boolean): void;
  /** Ends the worker (busy synchronous code runs on until it returns, on Deno). */
  terminate(): void;
}

/** What a worker reports to its thread. */
export interface WorkerListener {
  /** A message from the worker. */
  message(data: unknown[]): void;
  /** The worker failed outside any call's reach, or a reply could not be received. */
  died(error: Error): void;
}

/**
 * Why no worker can start here, or undefined if one can: a sentence to follow
 * the caller's label.
 */
export function workerProblem(): string | undefined {
  if (typeof globalThis.Worker !== "function") {
    return "this runtime has no Web Workers (globalThis.Worker is missing), so nothing can " +
      "run on another thread here. Run the function on the loop instead.";
  }
  return undefined;
}

/** Starts a worker speaking `protocol`; `options` are the runtime's own (Deno: permissions). */
export function startWorker(
  protocol: Protocol,
  name: string,
  options: Record<string, unknown>,
  listener: WorkerListener,
): WorkerLink {
  const worker = new Worker(sourceUrl(protocol), { ...options, type: "module", name });
  worker.onmessage = (event) => listener.message(event.data);
  worker.onerror = (event) => {
    event.preventDefault();
    listener.died(new Error(`A thread's worker failed: ${event.message}`));
  };
  worker.onmessageerror = () => {
    listener.died(new TypeError("A thread's reply could not be received (deserialized)."));
  };
  return {
    post(message) {
      worker.postMessage(message);
    },
    keepAlive() {}, // Deno has no unref: the pool ends idle workers with their last run
    terminate() {
      worker.terminate();
    },
  };
}

/** The worker module's URL, one per protocol: made once, since blob: URLs are never revoked here. */
const sourceUrls = new WeakMap<Protocol, string>();

function sourceUrl(protocol: Protocol): string {
  let url = sourceUrls.get(protocol);
  if (url === undefined) {
    const source = workerSource(protocol, "web");
    url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    sourceUrls.set(protocol, url);
  }
  return url;
}
