/**
 * The runtime adapter: how a pool starts a worker and talks to it on the
 * runtime it finds itself on, chosen each time a worker starts.
 *
 * - Deno, Bun and browsers: a Web Worker, a module loaded from a `blob:` URL
 *   (no read permission needed). On Deno its options may carry permissions.
 *   Idle Deno workers keep the process alive (Deno's Worker has no `unref`):
 *   the pool ends them when its last run ends.
 * - Node: `node:worker_threads` (Node has no Web Worker), loaded with a
 *   dynamic `import()` the first time, from a `data:` URL module (Node
 *   rejects `blob:` worker URLs). A worker is `unref()`ed while idle, so that
 *   it never keeps the process alive; a busy one does, as the work it does is
 *   what the loop waits for. Messages to a worker that is still loading wait
 *   for it (checked for cloning at once, as a `postMessage` would be).
 * - Threads need `SharedArrayBuffer` (`cancelled()` and withdrawing calls
 *   read shared memory), which a browser gives only to cross-origin isolated
 *   pages; and Workers, which Cloudflare Workers (workerd) do not have. There,
 *   a call fails with an `Error` that says so.
 *
 * @module
 */

import type { Protocol } from "./protocol.ts";
import { type WorkerKind, workerSource } from "./worker.ts";

/** A worker as a pool's thread sees it, on any runtime. */
export interface WorkerLink {
  /** Posts a message; throws (a `DataCloneError`) if something in it cannot be cloned. */
  post(message: unknown[]): void;
  /** Whether the worker may keep the process alive: a busy one yes, an idle one no. */
  keepAlive(busy: boolean): void;
  /** Ends the worker (on Deno and Node, busy synchronous code runs on until it returns). */
  terminate(): void;
}

/** What a worker reports to its thread. */
export interface WorkerListener {
  /** A message from the worker. */
  message(data: unknown[]): void;
  /** The worker failed outside any call's reach, or ended, or a reply could not be received. */
  died(error: Error): void;
}

/** The runtime's globals that choose the adapter. */
const host = globalThis as {
  Deno?: unknown;
  Bun?: unknown;
  process?: { versions?: { node?: unknown } };
  Worker?: unknown;
  SharedArrayBuffer?: unknown;
  crossOriginIsolated?: unknown;
};

/** Which kind of worker this runtime has: Node's own, or Web Workers (Deno, Bun, browsers). */
function workerKind(): WorkerKind {
  // Deno and Bun also say they are Node; and the first use of `process` costs
  // Deno about 100 ms, so it is looked at last.
  if (host.Deno !== undefined || host.Bun !== undefined) return "web";
  return typeof host.process?.versions?.node === "string" ? "node" : "web";
}

/**
 * Why no worker can start here, or undefined if one can: a sentence to follow
 * the caller's label.
 */
export function workerProblem(): string | undefined {
  if (workerKind() === "web" && typeof host.Worker !== "function") {
    return "this runtime has no Web Workers (globalThis.Worker is missing), so nothing can " +
      "run on another thread here. Run the function on the loop instead.";
  }
  if (typeof host.SharedArrayBuffer !== "function") {
    return host.crossOriginIsolated === false
      ? "threads need SharedArrayBuffer (cancelled() and withdrawing calls read shared " +
        "memory), and a browser gives it only to a cross-origin isolated page. Serve the page " +
        "with the headers `Cross-Origin-Opener-Policy: same-origin` and " +
        "`Cross-Origin-Embedder-Policy: require-corp`, or run the function on the loop instead."
      : "threads need SharedArrayBuffer (cancelled() and withdrawing calls read shared " +
        "memory), and this runtime has none. Run the function on the loop instead.";
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
  return workerKind() === "node"
    ? startNodeWorker(protocol, name, listener)
    : startWebWorker(protocol, name, options, listener);
}

// ---------------------------------------------------------------------------
// Web Workers: Deno, Bun, browsers.

/** What this file uses of a Web Worker (Bun's also has ref and unref). */
interface WebWorker {
  onmessage: ((event: { data: unknown[] }) => void) | null;
  onerror: ((event: { message: string; preventDefault(): void }) => void) | null;
  onmessageerror: (() => void) | null;
  postMessage(message: unknown): void;
  terminate(): void;
  ref?(): void;
  unref?(): void;
}

function startWebWorker(
  protocol: Protocol,
  name: string,
  options: Record<string, unknown>,
  listener: WorkerListener,
): WorkerLink {
  const Worker = host.Worker as new (url: string, options: object) => WebWorker;
  const worker = new Worker(webSourceUrl(protocol), { ...options, type: "module", name });
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
    keepAlive(busy) {
      if (busy) worker.ref?.();
      else worker.unref?.();
    },
    terminate() {
      worker.terminate();
    },
  };
}

/** The worker module's blob: URL, one per protocol, made once (never revoked: workers reuse it). */
const webSourceUrls = new WeakMap<Protocol, string>();

function webSourceUrl(protocol: Protocol): string {
  let url = webSourceUrls.get(protocol);
  if (url === undefined) {
    const source = workerSource(protocol, "web");
    url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    webSourceUrls.set(protocol, url);
  }
  return url;
}

// ---------------------------------------------------------------------------
// Node: node:worker_threads.

/** What this file uses of `node:worker_threads`. */
interface NodeWorkerThreads {
  Worker: new (url: URL, options: { name: string }) => NodeWorker;
}

interface NodeWorker {
  on(type: "message", listener: (data: unknown[]) => void): void;
  on(type: "error", listener: (error: Error) => void): void;
  on(type: "messageerror", listener: () => void): void;
  on(type: "exit", listener: (code: number) => void): void;
  postMessage(message: unknown): void;
  terminate(): void;
  ref(): void;
  unref(): void;
}

let nodeWorkerThreads: Promise<NodeWorkerThreads> | undefined;

function startNodeWorker(protocol: Protocol, name: string, listener: WorkerListener): WorkerLink {
  nodeWorkerThreads ??= import("node:worker_threads") as Promise<NodeWorkerThreads>;
  let worker: NodeWorker | undefined;
  let waiting: unknown[][] | undefined = []; // messages posted while it loads
  let busy = false;
  let ended = false;
  nodeWorkerThreads.then((threads) => {
    if (ended) return; // terminated while loading
    const url = new URL(
      `data:text/javascript,${encodeURIComponent(workerSource(protocol, "node"))}`,
    );
    worker = new threads.Worker(url, { name });
    if (!busy) worker.unref();
    worker.on("message", (data) => listener.message(data));
    worker.on("error", (error) => {
      listener.died(new Error(`A thread's worker failed: ${error.message}`, { cause: error }));
    });
    worker.on("messageerror", () => {
      listener.died(new TypeError("A thread's reply could not be received (deserialized)."));
    });
    // After terminate() the pool no longer listens: an exit it hears of is the worker's own.
    worker.on("exit", (code) => {
      listener.died(new Error(`A thread's worker exited (exit code ${code}) during its call.`));
    });
    for (const message of waiting!) worker.postMessage(message);
    waiting = undefined;
  }).catch((error) => {
    listener.died(new Error(`A thread's worker could not start: ${error}`, { cause: error }));
  });
  return {
    post(message) {
      if (worker !== undefined) return worker.postMessage(message);
      structuredClone(message); // throws now what postMessage would throw
      waiting!.push(message);
    },
    keepAlive(yes) {
      busy = yes;
      if (yes) worker?.ref();
      else worker?.unref();
    },
    terminate() {
      ended = true;
      worker?.terminate();
    },
  };
}
