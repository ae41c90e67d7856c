/**
 * One worker, as its pool sees it: the calls sent to it, in order, and the
 * shared slots through which the two sides decide, call by call, whether the
 * worker starts it or the loop withdraws it (protocol.ts).
 *
 * @module
 */

import { type Call, ENDED, QUEUED, SENT } from "./call.ts";
import type { Protocol, Spec } from "./protocol.ts";
import { startWorker, type WorkerLink } from "./runtime.ts";

/** Calls a pool's worker holds beyond the one it runs (the free pool starts a worker instead). */
export const QUEUE_AHEAD = 32;
/** Slots per worker: more than the calls it can hold, so a slot is free again when reused. */
const SLOTS = 2 * (QUEUE_AHEAD + 1);

let workersAlive = 0;
let workersMade = 0;

/**
 * How many workers of this module are alive now. For tests (not exported from
 * `mod.ts`): after a test, none should be.
 */
export function liveWorkers(): number {
  return workersAlive;
}

/** What a thread tells its pool. */
export interface ThreadOwner {
  readonly protocol: Protocol;
  /** The runtime's own worker options (Deno: permissions). */
  readonly workerOptions: Record<string, unknown>;
  reply(thread: Thread, message: unknown[]): void;
  died(thread: Thread, error: Error): void;
}

/** One worker and the calls sent to it, in order: the one it runs, then those sent ahead. */
export class Thread {
  readonly #link: WorkerLink;
  readonly #p: Protocol;
  /** The state and the seen-cancelled flag of each call sent, shared with the worker. */
  readonly #slots: Int32Array;
  /**
   * The calls sent and not answered yet, oldest first; each answer is the
   * oldest's. Null stands for a call withdrawn and sent elsewhere, whose
   * answer (SKIPPED) is still to come.
   */
  readonly sent: (Call | null)[] = [];
  #ids = 0;
  /** The refs of the functions defined on the worker, by their keys. */
  readonly #refs = new Map<string, number>();
  #lastRef = 0;
  /** The CALLS message of this turn, posted by `post` (its calls are in `sent` already). */
  #outbox: unknown[];
  /** A call of it was cancelled while running: it takes no more calls and ends when it is free. */
  tainted = false;
  terminated = false;
  /** A message came from the worker: it started. */
  heard = false;

  constructor(owner: ThreadOwner) {
    this.#p = owner.protocol;
    this.#outbox = [this.#p.toWorker.CALLS];
    this.#slots = new Int32Array(new SharedArrayBuffer(SLOTS * 2 * 4));
    this.#link = startWorker(this.#p, `tinyio thread ${++workersMade}`, owner.workerOptions, {
      message: (data) => {
        this.heard = true;
        owner.reply(this, data);
      },
      died: (error) => owner.died(this, error),
    });
    workersAlive++;
    this.#link.post([this.#p.toWorker.SETUP, this.#slots.buffer]);
  }

  /** Calls were given to it this turn and are not posted yet. */
  get filling(): boolean {
    return this.#outbox.length > 1;
  }

  /** Adds the call, in a fresh slot, to the message that `post` sends. */
  give(call: Call): void {
    const target = call.target;
    let ref = this.#refs.get(target.key);
    if (ref === undefined) {
      if (this.#refs.size >= this.#p.refs) this.#refs.clear(); // the worker keeps the latest
      ref = ++this.#lastRef;
      this.#refs.set(target.key, ref);
      const spec: Spec = "source" in target
        ? [this.#p.spec.SOURCE, target.source]
        : [this.#p.spec.MODULE, target.module, target.exportName];
      this.#outbox.push(this.#p.DEFINE, ref, spec);
    }
    const id = ++this.#ids;
    const at = (id % SLOTS) * 2;
    Atomics.store(this.#slots, at, this.#p.slot.QUEUED);
    Atomics.store(this.#slots, at + 1, 0);
    this.#outbox.push(id, ref, call.args);
    call.id = id;
    call.thread = this;
    call.state = SENT;
    if (this.sent.length === 0) this.#link.keepAlive(true);
    this.sent.push(call);
  }

  /**
   * Posts the calls given to it. A call that cannot be posted (an argument
   * cannot be cloned) is posted without its arguments, for the worker to skip;
   * it is returned with its error.
   */
  post(): [Call, unknown][] | undefined {
    const message = this.#outbox;
    if (message.length === 1 || this.terminated) return;
    this.#outbox = [this.#p.toWorker.CALLS];
    try {
      this.#link.post(message);
      return;
    } catch {
      // Find the culprits: post the calls one by one (definitions are text).
    }
    const unsent: [Call, unknown][] = [];
    for (let i = 1; i < message.length; i += 3) {
      const one = [this.#p.toWorker.CALLS, message[i], message[i + 1], message[i + 2]];
      try {
        this.#link.post(one);
      } catch (error) {
        const id = one[1] as number;
        Atomics.store(this.#slots, (id % SLOTS) * 2, this.#p.slot.SKIP);
        one[3] = [];
        this.#link.post(one);
        const call = this.sent.find((call) => call !== null && call.id === id);
        if (call) unsent.push([call, error]);
      }
    }
    return unsent;
  }

  /** The oldest call sent, now answered: it leaves `sent`. */
  answered(): Call | null | undefined {
    const call = this.sent.shift();
    if (this.sent.length === 0) this.#link.keepAlive(false);
    return call;
  }

  /** Withdraws a call sent to it that the worker has not started: true if it never will. */
  withdraw(call: Call): boolean {
    const at = (call.id % SLOTS) * 2;
    const { QUEUED, SKIP } = this.#p.slot;
    return Atomics.compareExchange(this.#slots, at, QUEUED, SKIP) === QUEUED;
  }

  /**
   * Withdraws the calls sent ahead from index `from` of `sent` on that the
   * worker has not started, at most `most` of them: they are the pool's
   * again, QUEUED, in their order. Their answers (SKIPPED) are still to come.
   */
  takeBack(from: number, most = Infinity): Call[] {
    const back: Call[] = [];
    const sent = this.sent;
    for (let i = from; i < sent.length && back.length < most; i++) {
      const call = sent[i];
      if (call === null || call.state !== SENT || !this.withdraw(call)) continue;
      sent[i] = null;
      call.thread = null;
      call.state = QUEUED;
      back.push(call);
    }
    return back;
  }

  /**
   * The started call must stop: raises its `cancelled()` and asks the worker
   * to say (STOPPED) when no code of it runs; the worker takes no more calls.
   * False if the call has ended already: its answer is on its way.
   */
  stop(call: Call): boolean {
    const at = (call.id % SLOTS) * 2;
    const { STARTED, CANCEL } = this.#p.slot;
    if (Atomics.compareExchange(this.#slots, at, STARTED, CANCEL) !== STARTED) return false;
    this.tainted = true;
    this.#link.post([this.#p.toWorker.STOP, call.id]);
    return true;
  }

  /** Calls sent to it whose task still waits for their answer. */
  live(): number {
    let n = 0;
    for (const call of this.sent) if (call !== null && call.state !== ENDED) n++;
    return n;
  }

  terminate(): void {
    this.terminated = true;
    this.#link.terminate();
    workersAlive--;
  }
}
