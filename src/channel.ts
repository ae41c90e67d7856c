/**
 * Channels: values passed between coroutines first in, first out, through a
 * buffer of bounded size (a full buffer makes senders wait: back-pressure),
 * and the same channel as Web Streams and an async iterable for `async` code;
 * `fromAsyncIterable` pumps an async iterable or a stream into a channel.
 *
 * How a value moves. A coroutine's `send` or `receive` that need not wait
 * does its work at its first step, without pausing. One that must wait parks
 * in the channel's queue of senders or of receivers, first come first
 * served. When its turn comes it is woken, and with `yield*` it does its work
 * only at its next step, when it runs again: a receiver takes its value then,
 * a sender puts its value in then. So a coroutine that is cancelled (or timed
 * out) while it waits, even after it was woken, has taken nothing and sent
 * nothing: the value, or the place it was woken for, passes to the next in
 * line. Until it runs, a woken receiver's value stays in the buffer,
 * `reserved` for it, and a woken sender holds one place, `admitted`: nobody
 * overtakes anybody.
 *
 * Waiting costs a park and a wake-up. When the other side is about to run
 * anyway (a receiver that was just given a value, a sender just let in), an
 * operation that cannot go through pauses once instead — a bare `yield` —
 * and tries again at its next step, and only then waits. A paused receiver
 * counts as a place for a value, which is `held` for it in the buffer; fresh
 * operations do not overtake paused ones. A pause takes and sends nothing, so
 * the guarantee above holds; and in a rendezvous (capacity 0) that passes
 * values back and forth, both sides only pause, at a step each per value.
 *
 * Waited on as a coroutine of its own (`yield ch.receive()`, a gather, a
 * `timeout`) an operation does its work when it is woken instead, because
 * the loop ends such a coroutine with the value it was resumed with, without
 * stepping it again: if that coroutine is stopped in the instant between, the
 * value it took is lost (or the value it sent is sent). The docs say to use
 * `yield*`.
 *
 * Code outside any loop (the readable, the writable, async iterators, the
 * pump of `fromAsyncIterable`) waits in the same queues and is served at
 * once when its turn comes: a callback, called synchronously.
 *
 * @module
 */

import { type Coro, hintWhenYielded, TASK, WaitOn } from "./coro.ts";
import { ChannelClosedError } from "./errors.ts";
import { describe } from "./messages.ts";
import { fail, hold, primitive, release, resume, start, type Task, Wait } from "./wait.ts";

/**
 * A first in, first out ring that doubles when full. Its arrays are all of
 * one elements kind (packed, any value: made by `Array.from`), whatever they
 * hold — numbers in a buffer, waiters in a queue — so that the code that
 * reads and writes them sees one array map (with `new Array(n)`, holey small
 * integers at first, a channel's hot path deoptimized every few runs).
 */
class Fifo<T> {
  #items: (T | undefined)[] = Array.from({ length: 4 });
  #head = 0;
  #mask = 3;
  length = 0;

  push(x: T): void {
    if (this.length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.length) & this.#mask] = x;
    this.length++;
  }

  /** Takes the first item off; undefined if empty. */
  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const x = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & this.#mask;
    this.length--;
    return x;
  }

  /** Keeps only the items for which `keep` is true, in order. */
  retain(keep: (x: T) => boolean): void {
    const kept: T[] = [];
    for (let i = 0; i < this.length; i++) {
      const x = this.#items[(this.#head + i) & this.#mask] as T;
      if (keep(x)) kept.push(x);
    }
    this.#items.fill(undefined);
    this.#head = 0;
    this.length = 0;
    for (const x of kept) this.push(x);
  }

  #grow(): void {
    const old = this.#items;
    const n = old.length;
    const items: (T | undefined)[] = Array.from({ length: 2 * n });
    for (let i = 0; i < n; i++) items[i] = old[(this.#head + i) & this.#mask];
    this.#items = items;
    this.#head = 0;
    this.#mask = 2 * n - 1;
  }
}

type Result = IteratorResult<unknown, undefined>;

/** A receive's result once the channel is closed and drained (shared: it is the same every time). */
const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true });
/** The step that ends a send. */
const SENT: IteratorReturnResult<void> = Object.freeze({ value: undefined, done: true });

/**
 * What an operation's `state` holds once it has nothing left to do:
 * finished, given up, refused by `close()`, or withdrawn while it waited
 * (then its queue skips it).
 */
const ENDED: unique symbol = Symbol("ended");

/**
 * In the `state` of a send refused by `close()` while it waited: it
 * throws ChannelClosedError at its next step, as a woken sender puts its
 * value in then. (Handed to the coroutine at once with `fail`, that error
 * would be thrown in instead of a CancelledError that came in between, and a
 * producer that catches it to stop would then be warned about for not
 * re-throwing a cancellation.)
 */
const REFUSED: unique symbol = Symbol("refused");

/** In a woken operation's `state`: it does its work at its next step (see the module doc). */
class Woken {
  constructor(readonly core: ChannelCore) {}
}

/** In a paused operation's `state`: at its next step it tries again, and then waits (see `beginSend`). */
class Paused {
  constructor(readonly core: ChannelCore) {}
}

/** A step that only pauses: the loop runs the others, then steps the coroutine again. */
const PAUSE: IteratorYieldResult<undefined> = Object.freeze({ value: undefined, done: false });

/** A receive by code outside the loop: `done` gets its result, synchronously. */
class OutsideReceive {
  constructor(readonly done: (result: Result) => void) {}
}

/** A send by code outside the loop: `done` gets null once the value is in, or the error that refused it. */
class OutsideSend {
  constructor(
    readonly value: unknown,
    readonly done: (refused: ChannelClosedError | null) => void,
  ) {}
}

type Receiver = Receive | OutsideReceive;
type Sender = Send | OutsideSend;
/** Who waits for an operation: the task of a coroutine using `yield*`, or the operation's own wait. */
type Parked = Task | OwnWait;

/**
 * Where every receiver (or every sender) waits that is a coroutine using
 * `yield*`: one wait for all of them, and one frozen step that yields it (see WaitOn), so a waiting
 * receiver costs its operation and its place in the queue — 56 bytes, as a
 * coroutine waiting on an Event does. The operation about to park is handed
 * over in `core.parking` by its first step, which the loop follows with
 * `park` at once.
 */
class SharedWait extends Wait {
  constructor(readonly core: ChannelCore, readonly receiving: boolean) {
    super();
  }
  park(task: Task): void {
    const core = this.core;
    const op = core.parking;
    core.parking = null;
    if (this.receiving) core.parkReceiver(op as Receive, task);
    else core.parkSender(op as Send, task);
  }
  unpark(): void {
    // Nothing here: the loop throws into (or returns) the coroutine next,
    // which reaches the operation (`yield*` passes `throw` and `return` on),
    // and the operation withdraws itself (see `abandon`). A queue entry that
    // is served meanwhile is passed on from there.
  }
  override waitingFor(): string {
    return `Channel(${this.core.capacity}): ${this.receiving ? "receive" : "send"}`;
  }
}

/**
 * The wait of an operation waited on as a coroutine of its own: its own, so
 * that `unpark` finds the operation and withdraws it at once.
 */
class OwnWait extends Wait {
  task: Task | null = null;
  constructor(readonly op: Receive | Send, readonly core: ChannelCore) {
    super();
  }
  park(task: Task): void {
    this.task = task;
    const op = this.op;
    if (op instanceof Receive) this.core.parkReceiver(op, this);
    else this.core.parkSender(op, this);
  }
  unpark(): void {
    this.op.abandon();
  }
  override waitingFor(): string {
    return `Channel(${this.core.capacity}): ${this.op instanceof Receive ? "receive" : "send"}`;
  }
}

/**
 * A channel's state and rules. Every value in `buffer` is exactly one of:
 * `free` (counted in `size`, at most the capacity), `reserved` for a woken
 * receiver, `held` for a paused receiver, or an orphan (its receiver went
 * away before taking it: the next receiver takes it, and it does not count
 * in `size`). Receivers wait only while no value is free or orphaned;
 * senders wait while the places — room in the buffer, waiting receivers,
 * paused receivers without a held value — are all promised to `admitted`
 * senders.
 */
class ChannelCore {
  readonly buffer: Fifo<unknown> = new Fifo();
  free = 0;
  reserved = 0;
  orphans = 0;
  /** Waiting receivers: operations (withdrawn ones are skipped) and outside receivers. */
  readonly receivers: Fifo<Receiver> = new Fifo();
  /** How many of `receivers` still wait. */
  waiting = 0;
  /** Waiting senders (withdrawn ones are skipped). */
  readonly senders: Fifo<Sender> = new Fifo();
  /** The length of `senders` after withdrawn senders were last cleared out. */
  #sendersKept = 0;
  /** Senders woken to put their value in that have not run yet. */
  admitted = 0;
  /** Senders that paused once for a `reserved` receiver to run, and receivers for an `admitted` sender. */
  pausedSenders = 0;
  pausedReceivers = 0;
  /** Buffered values held for paused receivers (fewer than those): the first to try again take them. */
  held = 0;
  closed = false;
  /** The operation whose first step just decided to wait, until the loop parks it (see SharedWait). */
  parking: Receive | Send | null = null;
  /** Called once when the channel closes (the pump of `fromAsyncIterable` stops its source). */
  onClose: (() => void) | null = null;

  readonly receiveWait: SharedWait = new SharedWait(this, true);
  readonly sendWait: SharedWait = new SharedWait(this, false);
  readonly receiveStep: IteratorYieldResult<Wait> = Object.freeze({
    value: this.receiveWait,
    done: false,
  });
  readonly sendStep: IteratorYieldResult<Wait> = Object.freeze({
    value: this.sendWait,
    done: false,
  });
  readonly woken: Woken = new Woken(this);
  readonly paused: Paused = new Paused(this);

  constructor(readonly capacity: number) {}

  /** The places a value may go now — room in the buffer, waiting receivers — not promised to admitted senders. */
  #places(): number {
    return this.capacity - this.free + this.waiting + this.pausedReceivers - this.held -
      this.admitted;
  }

  // --- Receiving ---------------------------------------------------------------

  /** A value for a receiver that runs now; done once closed and drained; null if it must wait. */
  take(): Result | null {
    if (this.free + this.orphans > 0) {
      const value = this.buffer.shift();
      if (this.orphans > 0) {
        this.orphans--;
      } else {
        this.free--;
        if (this.senders.length > 0) this.admitSenders();
      }
      return { value, done: false };
    }
    return this.closed ? DONE : null;
  }

  /**
   * A receive operation's first step, `fresh`, or its second after a pause:
   * done at once, a pause, or the wait to park on. A fresh receive does not
   * take a value that receivers which paused (and so came first) are about to
   * try for.
   */
  beginReceive(op: Receive, fresh: boolean): IteratorResult<unknown, Result> {
    if (!fresh && this.held > 0) {
      this.held--;
      op.end();
      return { value: { value: this.buffer.shift(), done: false }, done: true };
    }
    const ahead = fresh ? this.pausedReceivers - this.held : 0;
    // Closed, it never waits: it takes what is left, or is done.
    if (this.closed || this.free + this.orphans > ahead) {
      op.end();
      return { value: this.take()!, done: true };
    }
    // A coroutine of its own (the loop gave it a task): a wait of its own.
    if (op[TASK] !== undefined) return { value: new OwnWait(op, this), done: false };
    // Behind receivers that paused, or an admitted sender is about to put a
    // value in: let them run first, once, rather than wait (a pause costs a
    // step; a wait, two and the bookkeeping).
    if (fresh && (ahead > 0 || this.pausedReceivers < this.admitted + this.pausedSenders)) {
      return this.#pauseReceiver(op);
    }
    this.parking = op;
    return this.receiveStep;
  }

  #pauseReceiver(op: Receive): IteratorYieldResult<undefined> {
    this.pausedReceivers++;
    op.state = this.paused;
    // A paused receiver is a place for a value, as a waiting one is: waiting senders first.
    if (this.senders.length > 0) this.admitSenders();
    return PAUSE;
  }

  /** `r` waits (an operation parked as `who`). */
  parkReceiver(r: Receiver, who?: Parked): void {
    if (r instanceof Receive) r.parkedAs(who!);
    this.receivers.push(r);
    this.waiting++;
    // One more place for a value: with capacity 0, a waiting sender may now come in.
    if (this.senders.length > 0) this.admitSenders();
  }

  /** The first receiver still waiting, taken off the queue. */
  #nextReceiver(): Receiver {
    let r: Receiver;
    do r = this.receivers.shift()!; while (r instanceof Receive && r.withdrawn);
    this.waiting--;
    return r;
  }

  /** A value came in (or was given back) while receivers wait: to the first of them. */
  #wakeReceiver(): void {
    const r = this.#nextReceiver();
    if (r instanceof OutsideReceive) return r.done({ value: this.buffer.shift(), done: false });
    const who = r.wakeUp(this.woken);
    if (who instanceof OwnWait) {
      resume(who.task!, who, { value: this.buffer.shift(), done: false });
    } else {
      this.reserved++;
      resume(who, this.receiveWait, undefined);
    }
  }

  /** A woken receiver runs: its value. */
  takeReserved(): Result {
    this.reserved--;
    return { value: this.buffer.shift(), done: false };
  }

  /** A paused receiver went away: a value held for it is the next receiver's. */
  unpauseReceiver(): void {
    this.pausedReceivers--;
    if (this.held > this.pausedReceivers) {
      this.held--;
      this.#passOn();
    }
  }

  /** A woken receiver went away before taking its value: the next receiver's. */
  giveBackReserved(): void {
    this.reserved--;
    this.#passOn();
  }

  /** A value whose receiver went away: to the first receiver still waiting, else the next to come. */
  #passOn(): void {
    if (this.waiting > 0) this.#wakeReceiver();
    else this.orphans++;
  }

  /** A waiting receiver went away. */
  withdrawReceiver(): void {
    this.waiting--;
    // Withdrawn entries are skipped when their turn comes; clear them out if
    // they pile up (timeouts on a quiet channel).
    if (this.receivers.length - this.waiting > this.waiting + 32) {
      this.receivers.retain((r) => !(r instanceof Receive && r.withdrawn));
    }
  }

  /** Async code's receive: at once if it can, else in the queue. */
  receiveOutside(): Promise<Result> {
    const result = this.take();
    if (result !== null) return Promise.resolve(result);
    return new Promise((resolve) => this.parkReceiver(new OutsideReceive(resolve)));
  }

  // --- Sending -----------------------------------------------------------------

  /** A value is in: to a waiting receiver, else into the buffer. */
  #commit(value: unknown): void {
    this.buffer.push(value);
    if (this.waiting > 0) this.#wakeReceiver();
    else if (this.pausedReceivers > this.held) this.held++;
    else if (this.free < this.capacity) this.free++;
    // Admitted for a receiver that has gone since: the next receiver takes it.
    else this.orphans++;
  }

  /** Puts `value` in if it can go in now, without waiting (`trySend`). */
  offer(value: unknown): boolean {
    if (this.closed || this.#places() <= 0) return false;
    this.#commit(value);
    return true;
  }

  /**
   * A send operation's first step, `fresh`, or its second after a pause: done
   * at once, a pause, or the wait to park on. A fresh send does not take a
   * place that senders which paused (and so came first) are about to try for.
   */
  beginSend(op: Send, fresh: boolean): IteratorResult<unknown, void> {
    const ahead = fresh ? this.pausedSenders : 0;
    if (!this.closed && this.#places() > ahead) {
      this.#commit(op.payload);
      op.end();
      return SENT;
    }
    // A coroutine of its own (the loop gave it a task): a wait of its own.
    // Closed, its `park` throws ChannelClosedError, which the loop throws into
    // it: its first step may not throw.
    if (op[TASK] !== undefined) return { value: new OwnWait(op, this), done: false };
    if (this.closed) {
      const error = closedError(op.payload, false);
      op.end();
      throw error; // into the caller, at its `yield*`
    }
    // Behind senders that paused, or a receiver that was given a value is
    // about to run, and then likely to receive again: let them run first,
    // once, rather than wait. (Nothing is sent yet: a cancellation during the
    // pause loses nothing.)
    if (fresh && (ahead > 0 || this.pausedSenders < this.reserved + this.held)) {
      return this.#pauseSender(op);
    }
    this.parking = op;
    return this.sendStep;
  }

  #pauseSender(op: Send): IteratorYieldResult<undefined> {
    this.pausedSenders++;
    op.state = this.paused;
    return PAUSE;
  }

  /** `s` waits (an operation parked as `who`); on a closed channel it is refused instead. */
  parkSender(s: Sender, who?: Parked): void {
    if (this.closed) {
      if (s instanceof OutsideSend) return s.done(closedError(s.value, false));
      const error = closedError(s.payload, false);
      s.end();
      throw error;
    }
    if (s instanceof Send) s.parkedAs(who!);
    this.senders.push(s);
    if (this.senders.length > 2 * this.#sendersKept + 32) {
      this.senders.retain((x) => !(x instanceof Send && x.withdrawn));
      this.#sendersKept = this.senders.length;
    }
  }

  /** Lets waiting senders in, first come first served, while there are places. */
  admitSenders(): void {
    while (this.#places() > 0) {
      const s = this.senders.shift();
      if (s === undefined) return;
      if (s instanceof OutsideSend) {
        this.#commit(s.value);
        s.done(null);
      } else if (!s.withdrawn) {
        const value = s.payload;
        const who = s.wakeUp(this.woken);
        if (who instanceof OwnWait) {
          this.#commit(value);
          resume(who.task!, who, undefined);
        } else {
          this.admitted++;
          resume(who, this.sendWait, undefined);
        }
      }
    }
  }

  /** A woken sender runs: its value goes in (or, if the channel was closed meanwhile, is refused). */
  commitAdmitted(value: unknown): void {
    this.admitted--;
    if (this.closed) throw closedError(value, true);
    this.#commit(value);
  }

  /** A woken sender went away before putting its value in: its place passes on. */
  giveBackAdmitted(): void {
    this.admitted--;
    if (this.senders.length > 0) this.admitSenders();
  }

  /** Async code's send: `s.done` is told once the value is in, or refused. */
  sendOutside(s: OutsideSend): void {
    if (this.offer(s.value)) s.done(null);
    else this.parkSender(s);
  }

  // --- Closing -----------------------------------------------------------------

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (let s; (s = this.senders.shift()) !== undefined;) {
      if (s instanceof OutsideSend) {
        s.done(closedError(s.value, true));
      } else if (!s.withdrawn) {
        const error = closedError(s.payload, true);
        const who = s.wakeUp(null);
        if (who instanceof OwnWait) fail(who.task!, who, error);
        else resume(who, this.sendWait, undefined); // it throws at its step (see REFUSED)
      }
    }
    // Receivers wait only while nothing is buffered for them: they are done.
    while (this.waiting > 0) {
      const r = this.#nextReceiver();
      if (r instanceof OutsideReceive) {
        r.done(DONE);
      } else {
        const who = r.wakeUp(null);
        if (who instanceof OwnWait) resume(who.task!, who, DONE);
        else resume(who, this.receiveWait, DONE);
      }
    }
    this.receivers.retain(() => false);
    const onClose = this.onClose;
    this.onClose = null;
    onClose?.();
  }
}

/** The error for a send refused because the channel is closed. */
function closedError(value: unknown, waited: boolean): ChannelClosedError {
  return new ChannelClosedError(
    `Channel.send(): the channel ${waited ? "was closed while this send waited" : "is closed"}, ` +
      `so the value ${describe(value)} was not sent. Send only until the channel is closed; a ` +
      "producer whose consumer may close the channel early catches ChannelClosedError to stop.",
  );
}

/**
 * `ch.receive()`, a coroutine of 48 bytes. To the loop it is a WaitOn (its
 * prototype is WaitOn's, see below): the loop steps it inline under `yield*`
 * or gives it a task of its own, as for `sleep()`. `state` holds the channel
 * until its first step; then, while it waits, who waits (the task of the
 * coroutine that `yield*`s it, or its own wait); then `Woken` once woken;
 * then ENDED. `core` is the channel, for `abandon`.
 */
class Receive {
  // Keeps the hidden class alive between runs (see `Core.#keepShapes` in loop.ts).
  static #keepShape: Receive = new Receive(new ChannelCore(0));

  /** Its task, if a loop waits on it as a coroutine (see WaitOn). */
  [TASK]: unknown = undefined;
  state: ChannelCore | Parked | Woken | Paused | typeof ENDED;

  constructor(readonly core: ChannelCore) {
    this.state = core;
  }

  get withdrawn(): boolean {
    return this.state === ENDED;
  }
  parkedAs(who: Parked): void {
    this.state = who;
  }
  /**
   * Its turn came: returns who waits. With `woken`, it takes its value at its
   * next step; without (closed), or waited on as a coroutine of its own, the
   * channel resumes it with the result now and it is done.
   */
  wakeUp(woken: Woken | null): Parked {
    const who = this.state as Parked;
    this.state = woken === null || who instanceof OwnWait ? ENDED : woken;
    return who;
  }
  end(): void {
    this.state = ENDED;
  }

  // deno-lint-ignore no-explicit-any
  next(sent?: any): IteratorResult<unknown, Result> {
    const state = this.state;
    if (state === this.core) return this.core.beginReceive(this, true); // the first step
    if (state instanceof Woken) {
      this.state = ENDED;
      return { value: this.core.takeReserved(), done: true };
    }
    if (state instanceof Paused) {
      this.core.pausedReceivers--;
      return this.core.beginReceive(this, false);
    }
    // Resumed with its result (by close()), or stepped again after it ended.
    return { value: sent, done: true };
  }

  /** It will take no value: it leaves the queue, or passes on the value it was woken for. */
  abandon(): void {
    const state = this.state;
    this.state = ENDED;
    if (state instanceof Woken) this.core.giveBackReserved();
    else if (state instanceof Paused) this.core.unpauseReceiver();
    else if (state !== ENDED && state !== this.core) this.core.withdrawReceiver(); // it waited
  }

  return(value: Result): IteratorResult<unknown, Result> {
    this.abandon();
    return { value, done: true };
  }

  throw(error: unknown): IteratorResult<unknown, Result> {
    this.abandon();
    throw error;
  }

  [Symbol.iterator](): this {
    return this;
  }
}

/**
 * `ch.send(v)`, a coroutine of 48 bytes (see Receive). `state` as for
 * Receive (`Woken` knows the channel), or REFUSED; `payload`, the value to
 * send, until it is sent.
 */
class Send {
  // Keeps the hidden class alive between runs (see `Core.#keepShapes` in loop.ts).
  static #keepShape: Send = new Send(new ChannelCore(0), 0);

  /** Its task, if a loop waits on it as a coroutine (see WaitOn). */
  [TASK]: unknown = undefined;
  state: ChannelCore | Parked | Woken | Paused | typeof ENDED | typeof REFUSED;

  constructor(core: ChannelCore, public payload: unknown) {
    this.state = core;
  }

  get withdrawn(): boolean {
    return this.state === ENDED;
  }
  parkedAs(who: Parked): void {
    this.state = who;
  }
  /**
   * Its turn came: returns who waits. With `woken`, it puts its value in at
   * its next step; without (closed), it throws ChannelClosedError then. Waited
   * on as a coroutine of its own, the channel does its work now: it is done.
   */
  wakeUp(woken: Woken | null): Parked {
    const who = this.state as Parked;
    if (who instanceof OwnWait) this.end();
    else this.state = woken ?? REFUSED;
    return who;
  }
  end(): void {
    this.state = ENDED;
    this.payload = undefined;
  }

  // deno-lint-ignore no-explicit-any
  next(_sent?: any): IteratorResult<unknown, void> {
    const state = this.state;
    if (state instanceof ChannelCore) return state.beginSend(this, true); // the first step
    if (state instanceof Woken) {
      const payload = this.payload;
      this.end();
      state.core.commitAdmitted(payload);
      return SENT;
    }
    if (state instanceof Paused) {
      state.core.pausedSenders--;
      return state.core.beginSend(this, false);
    }
    if (state === REFUSED) {
      const error = closedError(this.payload, true);
      this.end();
      throw error;
    }
    return SENT;
  }

  /** It will send nothing: it passes on the place it was woken for (a waiting one is skipped later). */
  abandon(): void {
    const state = this.state;
    this.end();
    if (state instanceof Woken) state.core.giveBackAdmitted();
    else if (state instanceof Paused) state.core.pausedSenders--;
  }

  return(value: void): IteratorResult<unknown, void> {
    this.abandon();
    return { value, done: true };
  }

  throw(error: unknown): IteratorResult<unknown, void> {
    this.abandon();
    throw error;
  }

  [Symbol.iterator](): this {
    return this;
  }
}

// Receive and Send are WaitOns to the loop — `instanceof WaitOn`, stepped as
// WaitOns are, and with the iterator helpers (WaitOn extends Iterator) — but
// base classes to V8: subclasses of WaitOn, itself a subclass of the built-in
// Iterator, took 48 ns to construct against 15 ns, and a `yield*` of one that
// need not wait took 29 ns against 9 (measured, Deno 2.9.6), which made a
// channel slower than promises. They have fields and methods of their own.
Object.setPrototypeOf(Receive.prototype, WaitOn.prototype);
Object.setPrototypeOf(Send.prototype, WaitOn.prototype);

// A failed send is its caller's error, as with `yield*` (see `primitive`): a
// class's prototype is what `primitive` registers.
// deno-lint-ignore no-explicit-any
primitive(Send as unknown as (...args: any[]) => Coro);
// deno-lint-ignore no-explicit-any
primitive(Receive as unknown as (...args: any[]) => Coro);

/** Checks the capacity given to `what`: 0, a positive integer or Infinity. */
function checkCapacity(what: string, capacity: unknown): asserts capacity is number {
  const allowed = "give 0 (the default: each send waits for a receiver), a positive integer " +
    "(that many values wait in the buffer) or Infinity (no bound).";
  if (typeof capacity !== "number") {
    throw new TypeError(`${what}: the capacity is ${describe(capacity)}; ${allowed}`);
  }
  if (capacity !== Infinity && !(Number.isInteger(capacity) && capacity >= 0)) {
    throw new RangeError(`${what}: the capacity is ${capacity}; ${allowed}`);
  }
}

let coreOf: <T>(channel: Channel<T>) => ChannelCore;

/**
 * Passes values from coroutines to coroutines, first in, first out, through a
 * buffer of `capacity` values: `send` waits while the buffer is full (with
 * the default capacity 0 it waits until a receiver takes the value),
 * `receive` waits while it is empty. Waiting senders and waiting receivers
 * are each served first come, first served. `close()` ends it: the values
 * already buffered are still received, then every `receive` resumes with
 * `{ value: undefined, done: true }`; a `send` that waits, and every later
 * one, throws {@linkcode ChannelClosedError}.
 *
 * Nothing is lost or duplicated, with `yield*`: a `send` cancelled while it
 * waits sent nothing, a `receive` cancelled while it waits took nothing (the
 * next receiver gets that value), and every value accepted is received
 * exactly once. A `send` or `receive` that need not wait does not pause; one
 * that must wait while the other side is about to run pauses once (a bare
 * `yield`, taking and sending nothing) and tries again before it waits.
 *
 * For `async` code: `readable`, `writable` and `for await` read and write
 * the same channel with promises, with back-pressure, so
 * `response.body.pipeTo(ch.writable)` feeds coroutines and
 * `new Response(ch.readable)` streams their output.
 *
 * @example A producer and a consumer
 * ```ts
 * import { Channel, type Coro, Loop } from "@tinyio/core";
 *
 * const ch = new Channel<number>(2); // up to two values wait in the buffer
 * function* producer(): Coro<void> {
 *   for (let i = 1; i <= 5; i++) yield* ch.send(i); // waits while the buffer is full
 *   ch.close();
 * }
 * function* consumer(): Coro<number> {
 *   let sum = 0;
 *   for (let r; !(r = yield* ch.receive()).done;) sum += r.value;
 *   return sum;
 * }
 * const [, sum] = await new Loop().run(function* () {
 *   return yield [producer(), consumer()];
 * }());
 * console.assert(sum === 15);
 * ```
 */
export class Channel<T> implements AsyncIterable<T> {
  #core: ChannelCore;
  #readable: ReadableStream<T> | null = null;
  #writable: WritableStream<T> | null = null;

  static {
    coreOf = (channel) => channel.#core;
  }
  // Keeps the hidden class alive between runs: a coroutine's `ch.send` and `ch.receive` are
  // compiled against it (see `Core.#keepShapes` in loop.ts).
  static #keepShape: Channel<unknown> = new Channel(0);

  /**
   * Makes a channel that buffers `capacity` values: 0 (the default: a send
   * waits until a receiver takes its value), a positive integer, or
   * `Infinity`. Anything else is a `RangeError` (a `TypeError` if not a number).
   */
  constructor(capacity: number = 0) {
    checkCapacity("new Channel()", capacity);
    this.#core = new ChannelCore(capacity);
  }

  /**
   * Sends `value`: waits while the buffer is full (capacity 0: until a
   * receiver takes it). Throws {@linkcode ChannelClosedError} if the channel
   * is closed, or is closed while this waits; the value is then not sent.
   * Use it with `yield*` (see {@linkcode Channel}).
   *
   * @example
   * ```ts
   * import { Channel, Loop } from "@tinyio/core";
   *
   * const ch = new Channel<string>(1);
   * await new Loop().run(ch.send("hello")); // room in the buffer: done at once
   * console.assert(ch.size === 1);
   * ```
   */
  send(value: T): Coro<void> {
    return new Send(this.#core, value) as unknown as Coro<void>;
  }

  /**
   * Receives the next value: `{ value, done: false }`; waits while none is
   * buffered. Once the channel is closed and drained it resumes with
   * `{ value: undefined, done: true }`, at once and every time after. Use it
   * with `yield*`: `for (let r; !(r = yield* ch.receive()).done;) use(r.value);`.
   *
   * @example
   * ```ts
   * import { Channel, Loop } from "@tinyio/core";
   *
   * const ch = new Channel<number>(1);
   * ch.trySend(7);
   * ch.close();
   * const loop = new Loop();
   * console.assert((await loop.run(ch.receive())).value === 7);
   * console.assert((await loop.run(ch.receive())).done);
   * ```
   */
  receive(): Coro<IteratorResult<T, undefined>> {
    return new Receive(this.#core) as unknown as Coro<IteratorResult<T, undefined>>;
  }

  /**
   * Sends `value` if it is accepted without waiting — room in the buffer, or
   * a receiver waiting for it — and returns `true`; else (full, or closed)
   * returns `false` and sends nothing. Callable from anywhere, also outside
   * any loop (a timer, an event listener): it wakes a loop whose coroutine
   * waits for the value, as `Event.set()` does.
   *
   * @example
   * ```ts
   * import { Channel } from "@tinyio/core";
   *
   * const ch = new Channel<string>(1);
   * console.assert(ch.trySend("a") === true);
   * console.assert(ch.trySend("b") === false); // full
   * ```
   */
  trySend(value: T): boolean {
    return this.#core.offer(value);
  }

  /**
   * Closes the channel; a second call does nothing. Callable from anywhere.
   * Buffered values are still received; then receives are done. Waiting
   * senders get {@linkcode ChannelClosedError}, and `trySend` returns `false`.
   *
   * @example
   * ```ts
   * import { Channel } from "@tinyio/core";
   *
   * const ch = new Channel(1);
   * ch.close();
   * ch.close(); // idempotent
   * console.assert(ch.closed && !ch.trySend(1));
   * ```
   */
  close(): void {
    this.#core.close();
  }

  /**
   * True once `close()` was called.
   *
   * @example
   * ```ts
   * import { Channel } from "@tinyio/core";
   *
   * const ch = new Channel();
   * console.assert(!ch.closed);
   * ```
   */
  get closed(): boolean {
    return this.#core.closed;
  }

  /**
   * How many values wait in the buffer now; never more than the capacity.
   *
   * @example
   * ```ts
   * import { Channel } from "@tinyio/core";
   *
   * const ch = new Channel<number>(3);
   * ch.trySend(1);
   * ch.trySend(2);
   * console.assert(ch.size === 2);
   * ```
   */
  get size(): number {
    return this.#core.free;
  }

  /**
   * The channel as a `ReadableStream`, for `async` code: each read receives
   * one value (it reads nothing ahead, so cancelling it loses none); it ends
   * once the channel is closed and drained. Cancelling it closes the channel.
   * `new Response(ch.readable)` streams what coroutines send (for a
   * `Channel<Uint8Array>`). The same stream every time.
   *
   * @example
   * ```ts
   * import { Channel } from "@tinyio/core";
   *
   * const ch = new Channel<string>(2);
   * ch.trySend("a");
   * ch.trySend("b");
   * ch.close();
   * const read: string[] = [];
   * for await (const s of ch.readable) read.push(s);
   * console.assert(read.join() === "a,b");
   * ```
   */
  get readable(): ReadableStream<T> {
    return this.#readable ??= readableOf(this.#core) as ReadableStream<T>;
  }

  /**
   * The channel as a `WritableStream`, for `async` code: a write resolves
   * once the channel accepted the value (back-pressure, as `send`), and
   * rejects with {@linkcode ChannelClosedError} once it is closed. Closing or
   * aborting the stream closes the channel, so `stream.pipeTo(ch.writable)`
   * feeds coroutines and closes the channel at the end. The same stream every time.
   *
   * @example
   * ```ts
   * import { Channel, type Coro, Loop } from "@tinyio/core";
   *
   * const ch = new Channel<number>();
   * const piped = ReadableStream.from([1, 2, 3]).pipeTo(ch.writable);
   * function* sum(): Coro<number> {
   *   let total = 0;
   *   for (let r; !(r = yield* ch.receive()).done;) total += r.value;
   *   return total;
   * }
   * console.assert(await new Loop().run(sum()) === 6);
   * await piped;
   * ```
   */
  get writable(): WritableStream<T> {
    return this.#writable ??= writableOf(this.#core);
  }

  /**
   * Reads the channel from `async` code: `for await (const v of ch)`, which
   * ends once the channel is closed and drained. Leaving the loop early
   * (`break`, an error: the iterator's `return()`) closes the channel.
   *
   * @example
   * ```ts
   * import { Channel } from "@tinyio/core";
   *
   * const ch = new Channel<number>(Infinity);
   * for (const x of [1, 2, 3]) ch.trySend(x);
   * let first = 0;
   * for await (const x of ch) {
   *   first = x;
   *   break; // closes the channel
   * }
   * console.assert(first === 1 && ch.closed);
   * ```
   */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    const core = this.#core;
    return {
      next: () => core.receiveOutside() as Promise<IteratorResult<T>>,
      return: (value?: unknown) => {
        core.close();
        return Promise.resolve({ value, done: true });
      },
    };
  }
}

/**
 * For tests: a channel's counters. Once nothing uses a channel any more,
 * only `free` and `orphans` may be non-zero, and `buffered` is their sum.
 */
export function channelCounts(channel: Channel<unknown>): Record<string, number> {
  const core = coreOf(channel);
  return {
    buffered: core.buffer.length,
    free: core.free,
    orphans: core.orphans,
    reserved: core.reserved,
    held: core.held,
    waiting: core.waiting,
    admitted: core.admitted,
    pausedSenders: core.pausedSenders,
    pausedReceivers: core.pausedReceivers,
  };
}

hintWhenYielded(
  Channel,
  "Channel",
  "A Channel is not a coroutine: receive from it with `yield* ch.receive()` (it resumes with " +
    "`{ value, done }`), send with `yield* ch.send(value)`.",
);

/** The readable side: one value per read, nothing read ahead (highWaterMark 0). */
function readableOf(core: ChannelCore): ReadableStream<unknown> {
  let cancelled = false;
  return new ReadableStream({
    pull(controller) {
      // Handed over synchronously, so that a cancel in between cannot lose it.
      const give = (result: Result) => {
        if (cancelled) return;
        if (result.done) controller.close();
        else controller.enqueue(result.value);
      };
      const result = core.take();
      if (result !== null) return give(result);
      return new Promise<void>((resolve) =>
        core.parkReceiver(
          new OutsideReceive((result) => {
            give(result);
            resolve();
          }),
        )
      );
    },
    cancel() {
      cancelled = true;
      core.close();
    },
  }, { highWaterMark: 0 });
}

/** The writable side: a write resolves once the value is in. */
function writableOf<T>(core: ChannelCore): WritableStream<T> {
  return new WritableStream<T>({
    write: (value, controller) =>
      new Promise<void>((resolve, reject) => {
        // The Streams standard calls `abort` only once the write in flight has
        // settled, and this one settles only when a receiver takes the value:
        // an abort would wait for ever where the runtime follows the standard
        // to the letter (workerd does). Its signal fires at once: close then.
        const signal = (controller as { signal?: AbortSignal } | undefined)?.signal;
        const onAbort = () => core.close();
        signal?.addEventListener("abort", onAbort, { once: true });
        core.sendOutside(
          new OutsideSend(value, (refused) => {
            signal?.removeEventListener("abort", onAbort);
            if (refused === null) resolve();
            else reject(refused);
          }),
        );
      }),
    close: () => core.close(),
    abort: () => core.close(),
  });
}

// --- fromAsyncIterable ----------------------------------------------------------

/** What a pump reads: the next value, and how to close the source before its end. */
interface Source {
  next(): PromiseLike<{ done?: boolean; value?: unknown }>;
  close(): PromiseLike<unknown>;
}

/** True for a ReadableStream (where the runtime has them). */
function isStream(x: unknown): x is ReadableStream<unknown> {
  return typeof ReadableStream === "function" && x instanceof ReadableStream;
}

function sourceOf(source: AsyncIterable<unknown> | ReadableStream<unknown>): Source {
  if (isStream(source)) {
    const reader = source.getReader();
    return { next: () => reader.read(), close: () => reader.cancel() };
  }
  const iterator = source[Symbol.asyncIterator]();
  return {
    next: () => iterator.next(),
    close: () => Promise.resolve(iterator.return?.()),
  };
}

/** Calls `call` and returns its promise; what it throws becomes a rejection. */
function settled<T>(call: () => PromiseLike<T>): Promise<T> {
  try {
    return Promise.resolve(call());
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * The background coroutine of `fromAsyncIterable`, parked on this: it reads
 * the source and sends each value into the channel, with back-pressure. It
 * holds the run while a promise of the source is pending (and only then: while
 * it waits for room in the channel the loop's own coroutines are what it
 * waits for, and a virtual clock may jump). It ends when the source ends (and
 * closes the channel), fails with the source's error (and closes the
 * channel), or — once a consumer closes the channel — closes the source and
 * ends when that is done. Cancelled, it closes the channel and the source,
 * and the run waits until the source is closed.
 */
class Pump extends Wait {
  #task: Task | null = null;
  /** No more calls of the source's `next` (it ended, failed, or is being closed). */
  #over = false;
  /** The pump's coroutine was cancelled: nothing more is reported to it. */
  #cancelled = false;

  constructor(readonly source: Source, readonly core: ChannelCore) {
    super();
  }

  park(task: Task): void {
    this.#task = task;
    this.core.onClose = () => this.#closeSource();
    this.#pull();
  }

  unpark(): void {
    this.#cancelled = true;
    this.core.close(); // and so the source (onClose)
  }

  #pull(): void {
    const task = this.#task!;
    hold(task);
    settled(() => this.source.next()).then(
      (result) => {
        this.#got(result);
        release(task);
      },
      (error) => {
        this.#failed(error);
        release(task);
      },
    );
  }

  #got(result: { done?: boolean; value?: unknown }): void {
    if (this.#over) return; // closing meanwhile: the value is dropped, never sent
    if (result.done) {
      this.#over = true;
      this.core.close();
      resume(this.#task!, this, undefined);
      return;
    }
    // Sent at once, or when its turn comes; refused once closed (then onClose stops the source).
    this.core.sendOutside(
      new OutsideSend(result.value, (refused) => {
        if (refused === null && !this.#over) this.#pull();
      }),
    );
  }

  #failed(error: unknown): void {
    if (this.#over) return;
    this.#over = true;
    this.core.close();
    fail(this.#task!, this, error);
  }

  /** The channel was closed before the source ended: close the source, then end (unless cancelled). */
  #closeSource(): void {
    if (this.#over) return;
    this.#over = true;
    const task = this.#task!;
    hold(task);
    settled(() => this.source.close()).then(
      () => {
        if (!this.#cancelled) resume(task, this, undefined);
        release(task);
      },
      (error) => {
        // After a cancellation what the source does is not reported (as for fromPromise).
        if (!this.#cancelled) fail(task, this, error);
        release(task);
      },
    );
  }
}

/** The first step of `fromAsyncIterable`: makes the channel and starts the pump, in the caller's run. */
class StartPump extends Wait {
  constructor(
    readonly source: AsyncIterable<unknown> | ReadableStream<unknown>,
    readonly capacity: number,
  ) {
    super();
  }
  park(task: Task): void {
    // Opened here, when the coroutine runs: a locked stream throws into the caller.
    const source = sourceOf(this.source);
    const channel = new Channel<unknown>(this.capacity);
    start(task, new WaitOn({ value: new Pump(source, coreOf(channel)), done: false }));
    resume(task, this, channel);
  }
  unpark(): void {}
}

/**
 * Reads an async iterable — an async generator, a `ReadableStream` (a
 * `fetch` body, a file, `Deno.Command` output), anything with
 * `[Symbol.asyncIterator]` — into a new {@linkcode Channel} of
 * `options.capacity` (default 16), for coroutines to receive from. It starts,
 * in the current run, a background coroutine that reads the source only as
 * fast as the channel takes values and closes the channel at the end; it
 * resumes with the channel.
 *
 * A consumer that stops early closes the channel: the source is then closed
 * too (`return()` on an iterator, `cancel()` on a stream). So is it when the
 * run is cancelled, and the run settles only once the source is closed. An
 * async generator busy at an `await` can only be closed when it reaches its
 * next `yield` (JavaScript has no way to interrupt it), so its `finally`
 * runs then, and the run waits for that. An error of the source is an error
 * of the run. Until the source ends or the channel is closed the run goes
 * on: a consumer that stops reading must close the channel.
 *
 * @example An async generator, read by a coroutine
 * ```ts
 * import { type Coro, fromAsyncIterable, Loop } from "@tinyio/core";
 *
 * async function* numbers(): AsyncGenerator<number> {
 *   for (let i = 1; i <= 3; i++) yield i;
 * }
 * function* main(): Coro<number> {
 *   const ch = yield* fromAsyncIterable(numbers());
 *   let total = 0;
 *   for (let r; !(r = yield* ch.receive()).done;) total += r.value;
 *   return total;
 * }
 * console.assert(await new Loop().run(main()) === 6);
 * ```
 */
export function fromAsyncIterable<T>(
  source: AsyncIterable<T> | ReadableStream<T>,
  options: { capacity?: number } = {},
): Coro<Channel<T>> {
  if (
    !isStream(source) &&
    typeof (source as { [Symbol.asyncIterator]?: unknown })?.[Symbol.asyncIterator] !== "function"
  ) {
    const sync =
      typeof (source as { [Symbol.iterator]?: unknown })?.[Symbol.iterator] === "function"
        ? " For an array or another iterable, use `ReadableStream.from(items)`."
        : "";
    throw new TypeError(
      `fromAsyncIterable(): the source is ${describe(source)}, not an async iterable; give an ` +
        "async generator, a ReadableStream (a fetch body, a file's readable) or another object " +
        `with [Symbol.asyncIterator].${sync}`,
    );
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `fromAsyncIterable(source, options): options is ${describe(options)}; give an object ` +
        "such as { capacity: 16 }, or leave it out.",
    );
  }
  const capacity = options.capacity ?? 16;
  checkCapacity("fromAsyncIterable(source, { capacity })", capacity);
  return new WaitOn({ value: new StartPump(source, capacity), done: false });
}
