/**
 * The pool: the workers of `runInThread` or of one `ThreadPool`, and the
 * calls waiting for one. It decides which worker runs which call, sends calls
 * ahead to busy workers (a batch per message), takes them back when a worker
 * must stop or another is idle, and ends its idle workers when the last run
 * that used it ends (a run-end hook, no timer): a script exits as soon as its
 * work is done, and no worker outlives a test.
 *
 * Stopping a worker: `Worker.terminate()` does not interrupt synchronous
 * JavaScript in Deno 2.9, and after it no message tells when the worker
 * stopped. So a cancelled call raises the worker's shared-memory flag (what
 * `cancelled()` reads) and posts a stop request. A worker that is awaiting
 * answers it at once (its event loop is free, so nothing of the task runs);
 * a busy one replies when its call returns. Either reply means the worker is
 * idle at its event loop: it is terminated then, and the hold released.
 *
 * @module
 */

import type { Task } from "../wait.ts";
import { type Call, ENDED, QUEUED, SENT, STOPPING } from "./call.ts";
import { rebuild, threadError, unsentError } from "./errors.ts";
import { explainNotCapable } from "./permissions.ts";
import { type Failure, PROTOCOL, type Protocol } from "./protocol.ts";
import { workerProblem } from "./runtime.ts";
import { QUEUE_AHEAD, Thread, type ThreadOwner } from "./thread.ts";

/** A busy worker is sent more calls once it holds no more than this many: a batch at a time. */
const REFILL_AT = 16;

/** The workers of `runInThread` or of one `ThreadPool`, and the calls waiting for one. */
export class Pool implements ThreadOwner {
  closed = false;
  /** Workers with no call sent, ready for one. */
  readonly #idle: Thread[] = [];
  /** Every worker alive: never more than `max`, tainted ones included until they end. */
  readonly #threads = new Set<Thread>();
  /** Calls sent ahead per worker: none for the free pool, which starts a worker instead. */
  readonly #ahead: number;
  readonly #queue: (Call | undefined)[] = [];
  #head = 0;
  /** The runs that used this pool and have not ended: while any has, idle workers are kept. */
  readonly #runs = new Set<object>();

  constructor(
    readonly max: number,
    /** The runtime's own options for its workers (Deno: permissions). */
    readonly workerOptions: Record<string, unknown>,
    /** Names the pool in error messages. */
    readonly owner: string,
    readonly protocol: Protocol = PROTOCOL,
  ) {
    this.#ahead = max === Infinity ? 0 : QUEUE_AHEAD;
  }

  /** The error of every call of a closed pool. */
  closedError(): Error {
    return new Error(
      `${this.owner} is closed: its workers were terminated and it takes no more calls. ` +
        "Make a new ThreadPool, or close the pool only when its work is done.",
    );
  }

  /** The call's coroutine parks on it: it runs when a worker can take it. */
  submit(call: Call, task: Task): void {
    if (this.closed) throw this.closedError();
    call.holdRun(task);
    const run = call.run;
    if (!this.#runs.has(run)) {
      this.#runs.add(run);
      call.atRunEnd(() => this.#runEnded(run));
    }
    call.state = QUEUED;
    this.#queue.push(call); // behind calls already waiting, so that calls start in order
    this.#next();
  }

  /** The call's coroutine stopped waiting (cancelled, timed out); true if its worker has yet to stop. */
  withdraw(call: Call): boolean {
    if (call.state === QUEUED) {
      call.state = ENDED; // left in the queue, skipped there
      call.releaseRun();
    } else if (call.state === SENT) {
      const thread = call.thread!;
      if (thread.withdraw(call)) {
        call.state = ENDED; // the worker skips it; its answer is dropped
        call.releaseRun();
      } else {
        this.#stop(thread, call);
      }
    }
    return call.state === STOPPING;
  }

  /**
   * Sends the call to a worker if one can take it: an idle one, a new one, or
   * the least busy one with room ahead. False if all are full.
   */
  #dispatch(call: Call): boolean {
    let thread = this.#idle.pop();
    if (thread === undefined && this.#threads.size < this.max) {
      thread = this.#spawn(call);
      if (thread === undefined) return true; // none could start: the call failed
    }
    if (thread === undefined && this.#ahead > 0) {
      // A busy worker is given calls once it is down to REFILL_AT, then up to
      // the full QUEUE_AHEAD in the same turn: a batch per message.
      let least = this.#ahead + 1;
      for (const t of this.#threads) {
        const n = t.sent.length;
        if (!t.tainted && n < least && (n <= REFILL_AT || t.filling)) {
          thread = t;
          least = n;
        }
      }
    }
    if (thread === undefined) return false;
    const wasFilling = thread.filling;
    thread.give(call);
    if (thread.sent.length === 1) {
      this.#post(thread); // it was idle: at once
    } else if (!wasFilling) {
      queueMicrotask(() => this.#post(thread)); // the calls of this turn, together
    }
    return true;
  }

  /** A new worker; undefined if none can start here, and then `call` has failed with the reason. */
  #spawn(call: Call): Thread | undefined {
    const problem = workerProblem();
    if (problem !== undefined) {
      this.#failCall(call, new Error(`${call.label}: ${problem}`));
      return undefined;
    }
    let thread: Thread;
    try {
      thread = new Thread(this);
    } catch (error) {
      this.#failCall(call, explainNotCapable(error, this.owner));
      return undefined;
    }
    this.#threads.add(thread);
    return thread;
  }

  /** Posts the calls given to the thread; those that cannot be sent fail. */
  #post(thread: Thread): void {
    const unsent = thread.post();
    if (unsent === undefined) return;
    for (const [call, error] of unsent) {
      if (call.state === SENT) this.#failCall(call, unsentError(call, error)); // its SKIPPED is dropped
    }
  }

  /** The call ends with `error`, no worker running it (never sent, withdrawn, or the pool closed). */
  #failCall(call: Call, error: unknown): void {
    call.state = ENDED;
    call.failWith(error);
    call.releaseRun();
  }

  /**
   * A started call must stop: raise its cancelled() and ask the worker to say
   * when no code of the call runs. The worker takes no more calls; those sent
   * ahead that it has not started go back to the front of the queue.
   */
  #stop(thread: Thread, call: Call): void {
    call.state = STOPPING;
    if (!thread.stop(call)) return; // it has ended: its answer is on its way
    this.#requeue(thread.takeBack(thread.sent.indexOf(call) + 1));
  }

  /** Puts calls back at the front of the queue, in their order, and starts what can start. */
  #requeue(calls: Call[]): void {
    if (calls.length === 0) return;
    if (this.closed) {
      for (const call of calls) this.#failCall(call, this.closedError());
      return;
    }
    const queue = this.#queue;
    for (let i = calls.length - 1; i >= 0; i--) {
      if (this.#head > 0) queue[--this.#head] = calls[i];
      else queue.unshift(calls[i]);
    }
    this.#next();
  }

  /** A message from the thread's worker. */
  reply(thread: Thread, message: unknown[]): void {
    const { fromWorker, answer } = this.protocol;
    const kind = message[0];
    if (kind === fromWorker.CLOSING) {
      this.died(
        thread,
        new Error(
          "A thread's worker closed itself (self.close(), Deno.exit() or process.exit()) " +
            "during its call.",
        ),
      );
      return;
    }
    if (kind === fromWorker.STRAY) {
      console.error(
        "tinyio: a thread's worker raised an error after its call had returned " +
          "(a timer or promise the function left behind):",
        rebuild(message[1] as Failure[0]),
      );
      return;
    }
    if (!this.#threads.has(thread)) return; // terminated already
    if (kind === fromWorker.STOPPED) {
      // The stopping call awaits: nothing of it runs now, and the worker takes
      // no more calls. Terminate it; calls behind were put back already.
      const call = thread.answered();
      if (call != null && call.state !== ENDED) {
        call.state = ENDED;
        call.releaseRun();
      }
      this.#abandon(thread, new Error("A thread's worker was stopped."));
      return;
    }
    // ANSWERS: (kind, payload) pairs, for the oldest calls sent.
    const ended: Call[] = [];
    for (let i = 1; i < message.length && this.#threads.has(thread); i += 2) {
      const call = thread.answered();
      if (call == null || call.state === ENDED) continue;
      const kind = message[i], payload = message[i + 1];
      call.thread = null;
      if (call.state === SENT) {
        call.state = ENDED;
        if (kind === answer.DONE) call.succeed(payload);
        else if (kind === answer.FAILED) call.failWith(threadError(call, (payload as Failure)[0]));
      } else {
        // Stopping (cancelled, or the pool closed): what the call returned is
        // discarded. An error it threw without having seen cancelled() true is
        // an error of its own: a failing run reports it with its other errors.
        call.state = ENDED;
        if (kind === answer.FAILED && !(payload as Failure)[1]) {
          call.reportOwnError(threadError(call, (payload as Failure)[0]));
        }
      }
      ended.push(call);
    }
    this.#freed(thread);
    for (const call of ended) call.releaseRun();
  }

  /** An answer came from the thread: it takes the next call, or ends if tainted. */
  #freed(thread: Thread): void {
    if (thread.tainted) {
      if (thread.live() === 0) this.#retire(thread);
    } else if (thread.sent.length === 0) {
      this.#idle.push(thread);
    }
    this.#next();
    if (this.#idle.length > 0 && this.#head === this.#queue.length) this.#steal();
  }

  /**
   * A worker is idle and no call waits in the queue: it takes over the oldest
   * call sent ahead to a busy worker that has not started it, so that short
   * calls do not wait behind a long one.
   */
  #steal(): void {
    for (const busy of this.#threads) {
      const taken = busy.takeBack(1, 1); // not sent[0]: that one runs
      if (taken.length > 0) return this.#requeue(taken);
    }
  }

  /**
   * The worker died (an error outside any call's reach): its running call
   * fails, calls sent ahead are re-queued. A worker that died before it said
   * anything did not start at all, and the next would fail the same way (a
   * page's policy that forbids the worker's module, say): then all its calls
   * fail, so that the pool does not start worker after worker.
   */
  died(thread: Thread, error: Error): void {
    if (!this.#threads.has(thread)) return;
    this.#abandon(thread, error, thread.heard);
  }

  /**
   * Terminates the thread. Its calls not started go back to the queue (with
   * `requeue`; else they fail too); a started one fails with `error` (a
   * stopping one just ends).
   */
  #abandon(thread: Thread, error: Error, requeue = true): void {
    this.#retire(thread);
    const back = requeue ? thread.takeBack(0) : [];
    const ended: Call[] = [];
    for (const call of thread.sent) {
      if (call === null || call.state === ENDED) continue;
      call.thread = null;
      if (call.state === SENT) call.failWith(error);
      call.state = ENDED;
      ended.push(call);
    }
    thread.sent.length = 0;
    this.#requeue(back);
    this.#next();
    for (const call of ended) call.releaseRun();
  }

  #retire(thread: Thread): void {
    if (!this.#threads.delete(thread)) return;
    const i = this.#idle.indexOf(thread);
    if (i >= 0) this.#idle.splice(i, 1);
    thread.terminate();
  }

  /** Sends queued calls while workers can take them. */
  #next(): void {
    const queue = this.#queue;
    while (this.#head < queue.length) {
      const call = queue[this.#head]!;
      if (call.state === QUEUED && !this.#dispatch(call)) break;
      queue[this.#head++] = undefined;
    }
    if (this.#head === queue.length) {
      queue.length = 0;
      this.#head = 0;
    }
  }

  #runEnded(run: object): void {
    this.#runs.delete(run);
    if (this.#runs.size > 0) return;
    for (const thread of [...this.#threads]) {
      if (thread.live() === 0) this.#retire(thread);
    }
  }

  /** Terminates the workers; every call fails with the closed error, every later use too. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = this.closedError();
    const queue = this.#queue;
    for (let i = this.#head; i < queue.length; i++) {
      const call = queue[i]!;
      if (call.state === QUEUED) this.#failCall(call, error);
    }
    queue.length = 0;
    this.#head = 0;
    // Calls sent ahead and not started fail now; running calls fail now too,
    // and their runs still wait until their workers stop.
    for (const thread of [...this.#threads]) {
      thread.tainted = true;
      for (const call of thread.takeBack(0)) this.#failCall(call, error);
      for (const call of thread.sent) {
        if (call === null || call.state !== SENT) continue;
        call.failWith(error);
        this.#stop(thread, call);
      }
      if (thread.live() === 0) this.#retire(thread);
    }
  }
}
