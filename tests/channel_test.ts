/**
 * Channels: every bullet of the contract's "Channels and streams" — capacity
 * 0, n and Infinity, FIFO values and waiters, close and drain, trySend from
 * outside any loop, nothing lost or duplicated under cancellation (also in
 * the instant between a waiter being woken and running), the async side
 * (readable, writable, async iterator) with real pipes and a real HTTP
 * server, `fromAsyncIterable`, and bad input. The random schedules are in
 * tests/property_test.ts.
 */
import assert from "node:assert/strict";
import {
  Barrier,
  CancelledError,
  Channel,
  ChannelClosedError,
  type Coro,
  Event,
  fromAsyncIterable,
  fromPromise,
  isolate,
  Lock,
  Loop,
  Semaphore,
  sleep,
  timeout,
  toPromise,
} from "../mod.ts";
import { captureWarnings, delay, test } from "./_helper.ts";

/**
 * `ReadableStream.from(items)`, or where a runtime lacks it (Chromium before
 * it shipped) the same stream pulled by hand: one item a pull.
 */
function streamFrom<T>(items: Iterable<T>): ReadableStream<T> {
  const from = (ReadableStream as { from?: (items: Iterable<T>) => ReadableStream<T> }).from;
  if (typeof from === "function") return from.call(ReadableStream, items);
  const it = items[Symbol.iterator]();
  return new ReadableStream<T>({
    pull(controller) {
      const r = it.next();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel() {
      it.return?.();
    },
  });
}

function* pause(n = 1): Coro<void> {
  for (let i = 0; i < n; i++) yield;
}

/** Receives until the channel is closed and drained. */
function* drain<T>(ch: Channel<T>, into: T[] = []): Coro<T[]> {
  for (let r; !(r = yield* ch.receive()).done;) into.push(r.value);
  return into;
}

function* sendAll<T>(ch: Channel<T>, values: T[], log?: string[]): Coro<void> {
  for (const v of values) {
    yield* ch.send(v);
    log?.push(`sent ${v}`);
  }
}

// --- Capacity ----------------------------------------------------------------------

test("Channel: capacity 0 (the default) is a rendezvous: a send waits until a receiver takes it", async () => {
  const ch = new Channel<string>();
  const log: string[] = [];
  function* sender(): Coro<void> {
    log.push("sending");
    yield* ch.send("x");
    log.push("sent");
  }
  function* receiver(): Coro<void> {
    yield* pause(5); // the sender waits all this time
    log.push(`size ${ch.size}, trySend ${ch.trySend("no")}`);
    log.push("receiving");
    const r = yield* ch.receive();
    log.push(`received ${r.value}`);
  }
  await new Loop().run(function* () {
    yield [sender(), receiver()];
  }());
  // The sender goes on once the value is handed to the receiver, which takes it when it runs next.
  assert.deepEqual(log, ["sending", "size 0, trySend false", "receiving", "sent", "received x"]);
  // With a receiver waiting, a send is taken at once: trySend is true.
  const log2: string[] = [];
  await new Loop().run(function* () {
    yield new Set([function* () {
      log2.push(`got ${(yield* ch.receive()).value}`);
    }()]);
    yield; // the receiver waits now
    log2.push(`trySend ${ch.trySend("y")}, size ${ch.size}`);
  }());
  assert.deepEqual(log2, ["trySend true, size 0", "got y"]);
});

test("Channel: capacity n lets n sends through without a receiver; the next one waits", async () => {
  const ch = new Channel<number>(3);
  const log: string[] = [];
  function* producer(): Coro<void> {
    yield* sendAll(ch, [1, 2, 3, 4], log);
  }
  function* consumer(): Coro<void> {
    yield* pause(5);
    log.push(`size ${ch.size}`);
    const r = yield* ch.receive();
    log.push(`received ${r.value}`);
    yield* pause(2);
    log.push(`size ${ch.size}`);
  }
  await new Loop().run(function* () {
    yield [producer(), consumer()];
  }());
  assert.deepEqual(log, [
    "sent 1",
    "sent 2",
    "sent 3",
    "size 3",
    "received 1",
    "sent 4",
    "size 3",
  ]);
  assert.equal(ch.trySend(5), false, "full");
});

test("Channel: capacity Infinity never makes a send wait", async () => {
  const ch = new Channel<number>(Infinity);
  await new Loop().run(function* () {
    for (let i = 0; i < 10_000; i++) yield* ch.send(i);
  }());
  assert.equal(ch.size, 10_000);
  assert.equal(ch.trySend(-1), true);
  ch.close();
  const got = await new Loop().run(drain(ch));
  assert.equal(got.length, 10_001);
  assert.equal(got[9_999], 9_999);
});

test("Channel: a send or receive that need not wait does not pause; one that waits lets others run", async () => {
  const ch = new Channel<number>(10);
  let ticks = 0;
  function* ticker(): Coro<void> {
    for (let i = 0; i < 50; i++) {
      ticks++;
      yield;
    }
  }
  const seen: number[] = [];
  await new Loop().run(function* () {
    yield new Set([ticker()]);
    const before = ticks;
    for (let i = 0; i < 10; i++) yield* ch.send(i); // room for all ten: no pause
    for (let i = 0; i < 10; i++) yield* ch.receive();
    seen.push(ticks - before);
    yield new Set([function* () {
      yield* pause(3);
      ch.trySend(99);
    }()]);
    const r = yield* ch.receive(); // waits: the others run meanwhile
    seen.push(r.value!, ticks - before);
  }());
  assert.equal(seen[0], 0, "ten sends and ten receives without a pause");
  assert.equal(seen[1], 99);
  assert.ok(seen[2] >= 3, `the ticker ran ${seen[2]} times while the receive waited`);
});

// --- Order -------------------------------------------------------------------------

test("Channel: values come out in the order they went in, through several senders and receivers", async () => {
  for (const capacity of [0, 1, 4, Infinity]) {
    const ch = new Channel<number>(capacity);
    const got: number[] = [];
    const producer = function* (from: number): Coro<void> {
      for (let i = 0; i < 30; i++) {
        yield* ch.send(from + i);
        if (i % 3 === 0) yield;
      }
    };
    const consumer = () => drain(ch, got);
    await new Loop().run(function* () {
      yield new Set([consumer(), consumer(), consumer()]);
      yield [producer(0), producer(100)];
      ch.close();
    }());
    assert.equal(got.length, 60, `capacity ${capacity}`);
    for (const from of [0, 100]) {
      const mine = got.filter((x) => x >= from && x < from + 100);
      assert.deepEqual(mine, mine.toSorted((a, b) => a - b), `capacity ${capacity}: ${got}`);
    }
  }
});

test("Channel: waiting senders are served first come, first served", async () => {
  const ch = new Channel<string>(1);
  ch.trySend("first");
  const order: string[] = [];
  function* sender(name: string): Coro<void> {
    yield* ch.send(name);
    order.push(`${name} in`);
  }
  await new Loop().run(function* () {
    yield new Set([sender("a"), sender("b"), sender("c")]);
    yield* pause(3); // all three wait, in order a, b, c
    const got = [];
    for (let i = 0; i < 4; i++) got.push((yield* ch.receive()).value);
    yield* pause(3);
    order.push(`received ${got.join(" ")}`);
  }());
  assert.deepEqual(order, ["a in", "b in", "c in", "received first a b c"]);
});

test("Channel: waiting receivers are served first come, first served", async () => {
  for (const capacity of [0, 2]) {
    const ch = new Channel<number>(capacity);
    const got: string[] = [];
    const receiver = function* (name: string): Coro<void> {
      got.push(`${name}:${(yield* ch.receive()).value}`);
    };
    await new Loop().run(function* () {
      yield new Set([receiver("a"), receiver("b"), receiver("c")]);
      yield* pause(3);
      for (let i = 1; i <= 3; i++) assert.ok(ch.trySend(i));
      yield* pause(3);
    }());
    assert.deepEqual(got, ["a:1", "b:2", "c:3"], `capacity ${capacity}`);
  }
});

// --- close -------------------------------------------------------------------------

test("Channel: close() is idempotent; buffered values are still received, then done every time", async () => {
  const ch = new Channel<number>(5);
  for (const x of [1, 2, 3]) ch.trySend(x);
  ch.close();
  ch.close();
  assert.equal(ch.closed, true);
  assert.equal(ch.size, 3);
  assert.equal(ch.trySend(4), false);
  const results = await new Loop().run(function* () {
    const out = [];
    for (let i = 0; i < 6; i++) out.push(yield* ch.receive());
    return out;
  }());
  assert.deepEqual(results, [
    { value: 1, done: false },
    { value: 2, done: false },
    { value: 3, done: false },
    { value: undefined, done: true },
    { value: undefined, done: true },
    { value: undefined, done: true },
  ]);
  assert.equal(ch.size, 0);
});

test("Channel: a send waiting at close() and every later send throw ChannelClosedError; the values are not received", async () => {
  const ch = new Channel<string>(1);
  const log: string[] = [];
  function* sender(value: string): Coro<void> {
    try {
      yield* ch.send(value);
      log.push(`${value} sent`);
    } catch (error) {
      assert.ok(error instanceof ChannelClosedError, String(error));
      assert.equal((error as Error).name, "ChannelClosedError");
      log.push(`${value}: ${(error as Error).message}`);
    }
  }
  await new Loop().run(function* () {
    yield [
      sender("a"),
      sender("b"),
      function* () {
        yield* pause(2); // b waits: the buffer holds a
        ch.close();
        yield* sender("c");
      }(),
    ];
  }());
  log.sort();
  assert.equal(log[0], "a sent");
  assert.match(
    log[1],
    /^b: Channel\.send\(\): the channel was closed while this send waited, so the value "b" was not sent/,
  );
  assert.match(
    log[2],
    /^c: Channel\.send\(\): the channel is closed, so the value "c" was not sent\. .*catches ChannelClosedError/,
  );
  assert.deepEqual(await new Loop().run(drain(ch)), ["a"]);
  // `yield ch.send(v)`, a coroutine of its own: the error is thrown into the caller too.
  const error = await new Loop().run(function* () {
    try {
      yield ch.send("d");
    } catch (e) {
      return e;
    }
  }());
  assert.ok(error instanceof ChannelClosedError);
});

test("Channel: once closed, a receive answers at once, also behind a receiver that paused", async () => {
  const ch = new Channel<number>(0);
  const results: unknown[] = [];
  await new Loop({ clock: "virtual" }).run(function* () {
    yield new Set([function* () {
      try {
        yield* ch.send(1);
      } catch (e) {
        results.push((e as Error).name);
      }
    }()]);
    yield; // the sender waits
    yield new Set([
      function* () {
        results.push(yield* ch.receive()); // waits, and lets the sender in
      }(),
      function* () {
        results.push(yield* ch.receive()); // pauses for that sender
      }(),
      function* () {
        ch.close();
        // A coroutine of its own, behind the paused receiver: done at once, never waiting.
        results.push(yield* timeout(ch.receive(), 1_000));
      }(),
    ]);
  }());
  const done = { value: undefined, done: true };
  assert.deepEqual(results.toSorted((a, b) => JSON.stringify(a) < JSON.stringify(b) ? -1 : 1), [
    "ChannelClosedError",
    [done, true],
    done,
    done,
  ]);
});

test("Channel: a producer that stops on ChannelClosedError is not warned about when close() and a crash come together", async () => {
  const ch = new Channel<number>();
  const log: string[] = [];
  function* producer(): Coro<void> {
    try {
      for (let i = 0;; i++) yield* ch.send(i);
    } catch (error) {
      if (error instanceof ChannelClosedError) return; // the documented way to stop
      log.push(String((error as Error).name));
      throw error;
    }
  }
  const warnings = await captureWarnings(async () => {
    const error = await new Loop().run(function* () {
      yield [
        producer(),
        function* () {
          yield* pause(2); // the producer waits in send
          ch.close(); // refuses it ...
          throw new Error("boom"); // ... and, in the same step, the run crashes
        }(),
      ];
    }()).catch((e) => e);
    assert.equal(error.message, "boom");
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(log, ["CancelledError"], "the cancellation, not the refusal, reached it");
});

test("Channel: close() wakes waiting receivers with done, from a host timer and from another loop", async () => {
  const ch = new Channel<number>();
  const results: unknown[] = [];
  setTimeout(() => ch.close(), 20);
  await new Loop().run(function* () {
    results.push(yield* ch.receive(), yield ch.receive());
  }());
  assert.deepEqual(results, [{ value: undefined, done: true }, { value: undefined, done: true }]);

  const ch2 = new Channel<number>();
  const waiting = new Loop().run(ch2.receive());
  await new Loop().run(function* () {
    yield* pause(3);
    ch2.close();
  }());
  assert.deepEqual(await waiting, { value: undefined, done: true });
});

// --- trySend -------------------------------------------------------------------------

test("Channel: trySend from a host timer wakes a sleeping loop, as Event.set() does", async () => {
  const ch = new Channel<string>();
  const t0 = performance.now();
  setTimeout(() => assert.equal(ch.trySend("from a timer"), true), 30);
  const r = await new Loop().run(ch.receive());
  const ms = performance.now() - t0;
  assert.deepEqual(r, { value: "from a timer", done: false });
  assert.ok(ms >= 25 && ms < 2_000, `woken after ${ms} ms`);
  // From another loop, into a loop that sleeps on a receive.
  const ch2 = new Channel<number>(0);
  const [got] = await Promise.all([
    new Loop().run(function* () {
      return (yield* ch2.receive()).value;
    }()),
    new Loop().run(function* () {
      yield* sleep(10);
      assert.ok(ch2.trySend(7));
    }()),
  ]);
  assert.equal(got, 7);
});

test("Channel: trySend is true only if the value is accepted without waiting", async () => {
  const ch = new Channel<number>(1);
  assert.equal(ch.trySend(1), true);
  assert.equal(ch.trySend(2), false);
  assert.equal(ch.size, 1);
  // A full channel with a waiting sender: still false, and the waiting sender keeps its turn.
  const order: number[] = [];
  await new Loop().run(function* () {
    yield new Set([function* () {
      yield* ch.send(3);
    }()]);
    yield;
    assert.equal(ch.trySend(4), false);
    for (let i = 0; i < 2; i++) order.push((yield* ch.receive()).value!);
  }());
  assert.deepEqual(order, [1, 3]);
  ch.close();
  assert.equal(ch.trySend(5), false);
});

// --- Cancellation: nothing lost, nothing duplicated ----------------------------------------

test("Channel: a send cancelled while it waits leaves its value unsent", async () => {
  for (const capacity of [0, 1]) {
    const ch = new Channel<string>(capacity);
    if (capacity === 1) ch.trySend("buffered");
    const [, inTime] = await new Loop().run(timeout(
      function* () {
        yield* ch.send("timed out");
      }(),
      5,
    ));
    assert.equal(inTime, false);
    ch.trySend("later") || await new Loop().run(function* () {
      yield [ch.send("later"), ch.receive()];
    }());
    ch.close();
    const got = await new Loop().run(drain(ch));
    assert.ok(!got.includes("timed out"), `capacity ${capacity}: ${got}`);
  }
});

test("Channel: a receive cancelled while it waits takes no value: the next receiver gets it", async () => {
  const ch = new Channel<number>();
  const log: string[] = [];
  await new Loop().run(function* () {
    const [, inTime] = yield* timeout(
      function* () {
        log.push(`first got ${(yield* ch.receive()).value}`);
      }(),
      5,
    );
    log.push(`first timed out: ${!inTime}`);
    yield new Set([function* () {
      log.push(`second got ${(yield* ch.receive()).value}`);
    }()]);
    yield;
    ch.trySend(1);
  }());
  assert.deepEqual(log, ["first timed out: true", "second got 1"]);
});

test("Channel: a receiver woken with a value but cancelled before it runs passes the value on, in order", async () => {
  const ch = new Channel<number>(0);
  const got: string[] = [];
  function* doomed(): Coro<void> {
    const r = yield* ch.receive();
    got.push(`doomed got ${r.value}`); // never: it is cancelled before it runs again
  }
  function* crasher(): Coro<void> {
    yield; // the doomed receiver waits now
    assert.equal(ch.trySend(1), true); // it is woken with 1 ...
    assert.equal(ch.trySend(2), false); // (its value is reserved: no room, capacity 0)
    throw new Error("crash"); // ... and cancelled before it runs
  }
  await new Loop().run(function* () {
    const [error, ok] = yield* isolate(function* () {
      yield [doomed(), crasher()];
    }());
    assert.equal(ok, false);
    assert.equal((error as Error).message, "crash");
    // The value went back to the channel, ahead of anything sent later.
    assert.equal(ch.size, 0, "an orphaned value is not counted in size (capacity 0)");
    assert.equal(ch.trySend(3), false, "capacity 0 and no receiver: no room");
    yield new Set([ch.send(4)]);
    for (let i = 0; i < 2; i++) got.push(`next got ${(yield* ch.receive()).value}`);
  }());
  assert.deepEqual(got, ["next got 1", "next got 4"]);
});

test("Channel: a sender woken to put its value in but cancelled before it runs sends nothing", async () => {
  const ch = new Channel<string>(0);
  let pending: Promise<IteratorResult<string>> | undefined;
  function* doomed(): Coro<void> {
    yield* ch.send("doomed"); // waits: nobody receives yet
  }
  function* crasher(): Coro<void> {
    yield; // the doomed sender waits now
    // A receiver comes (async code's): the doomed sender is woken to put its value in ...
    pending = ch[Symbol.asyncIterator]().next();
    throw new Error("crash"); // ... and cancelled before it runs
  }
  await new Loop().run(function* () {
    const [, ok] = yield* isolate(function* () {
      yield [doomed(), crasher()];
    }());
    assert.equal(ok, false);
    // The receiver still waits, and gets the next value sent instead.
    assert.equal(ch.trySend("after"), true);
  }());
  assert.deepEqual(await pending, { value: "after", done: false });
  assert.equal(ch.trySend("more"), false, "nothing left over: no receiver, no room");
});

test("Channel: a crash cancelling many waiting senders and receivers leaves the channel consistent", async () => {
  const full = new Channel<number>(2);
  const empty = new Channel<number>(2);
  full.trySend(-1);
  full.trySend(-2);
  const error = await new Loop().run(function* () {
    const waiters: Coro<unknown>[] = [];
    for (let i = 0; i < 50; i++) waiters.push(full.send(i), empty.receive());
    for (let i = 0; i < 50; i++) {
      waiters.push(
        function* () {
          yield* full.send(100 + i);
        }(),
        function* () {
          yield* empty.receive();
        }(),
      );
    }
    yield new Set(waiters);
    yield* pause(3);
    throw new Error("boom");
  }()).catch((e) => e);
  assert.equal(error.message, "boom");
  // Nothing of the cancelled coroutines is left: the buffer as it was, room and waiters right.
  assert.equal(full.size, 2);
  assert.equal(empty.size, 0);
  assert.equal(empty.trySend(1), true);
  assert.equal(empty.trySend(2), true);
  assert.equal(empty.trySend(3), false);
  full.close();
  empty.close();
  assert.deepEqual(await new Loop().run(drain(full)), [-1, -2]);
  assert.deepEqual(await new Loop().run(drain(empty)), [1, 2]);
});

test("Channel: with `yield ch.receive()` (a coroutine of its own) a timed out receive takes nothing", async () => {
  const ch = new Channel<number>(0);
  await new Loop().run(function* () {
    const [r, inTime] = yield* timeout(ch.receive(), 5);
    assert.equal(inTime, false);
    assert.equal(r, undefined);
    assert.equal(ch.trySend(1), false, "no receiver waits any more");
    const [sent] = yield [ch.send(2), ch.receive()];
    assert.equal(sent, undefined);
  }());
});

// --- The async side ------------------------------------------------------------------------

test("Channel: readable reads nothing ahead, ends once drained, and cancelling it closes the channel", async () => {
  const ch = new Channel<number>(4);
  for (const x of [1, 2, 3]) ch.trySend(x);
  const reader = ch.readable.getReader();
  assert.equal(ch.size, 3, "getting a reader takes nothing");
  assert.deepEqual(await reader.read(), { value: 1, done: false });
  await delay(5);
  assert.equal(ch.size, 2, "one read, one value");
  await reader.cancel();
  assert.equal(ch.closed, true);
  assert.deepEqual(await new Loop().run(drain(ch)), [2, 3], "nothing lost by cancelling");
  assert.equal(ch.readable, ch.readable, "one stream");

  // A read that waits gets a value sent later, then the end.
  const ch2 = new Channel<string>();
  const reading = (async () => {
    const out: string[] = [];
    for await (const s of ch2.readable) out.push(s);
    return out;
  })();
  await new Loop().run(function* () {
    yield* sendAll(ch2, ["x", "y"]);
    ch2.close();
  }());
  assert.deepEqual(await reading, ["x", "y"]);
});

test("Channel: a pending read that is cancelled takes no value", async () => {
  const ch = new Channel<number>(1);
  const reader = ch.readable.getReader();
  const pending = reader.read(); // waits: nothing buffered
  await delay(2);
  await reader.cancel();
  // (`{ done: true }` where a runtime leaves `value` out: workerd at older dates.)
  const r = await pending;
  assert.equal(r.done, true);
  assert.equal(r.value, undefined);
  assert.equal(ch.trySend(1), false, "closed");
});

test("Channel: writable resolves a write only once the value is accepted (back-pressure)", async () => {
  const ch = new Channel<number>(1);
  const writer = ch.writable.getWriter();
  let second = false;
  await writer.write(1); // room in the buffer: accepted at once
  const write2 = writer.write(2).then(() => second = true);
  await delay(10);
  assert.equal(second, false, "the buffer is full: the write waits");
  assert.equal(ch.size, 1);
  const r = await new Loop().run(ch.receive());
  assert.equal(r.value, 1);
  await write2;
  assert.equal(second, true);
  assert.equal(ch.size, 1);
  await writer.close();
  assert.equal(ch.closed, true, "closing the writable closes the channel");
  assert.deepEqual(await new Loop().run(drain(ch)), [2]);
});

test("Channel: aborting the writable closes the channel; a write after close rejects with ChannelClosedError", async () => {
  const ch = new Channel<number>(0);
  const writer = ch.writable.getWriter();
  const pending = writer.write(1); // no receiver: it waits
  await writer.abort(new Error("stop"));
  assert.equal(ch.closed, true);
  await assert.rejects(pending);
  const ch2 = new Channel<number>(1);
  ch2.close();
  const writer2 = ch2.writable.getWriter();
  await assert.rejects(writer2.write(5), ChannelClosedError);
});

test("Channel: for await reads to the end; leaving early closes the channel", async () => {
  const ch = new Channel<number>(Infinity);
  for (const x of [1, 2, 3]) ch.trySend(x);
  ch.close();
  const all: number[] = [];
  for await (const x of ch) all.push(x);
  assert.deepEqual(all, [1, 2, 3]);

  const ch2 = new Channel<number>(Infinity);
  for (const x of [1, 2, 3]) ch2.trySend(x);
  for await (const x of ch2) {
    assert.equal(x, 1);
    break;
  }
  assert.equal(ch2.closed, true);
  assert.deepEqual(await new Loop().run(drain(ch2)), [2, 3]);

  // A pending next() gets a value sent later by a coroutine.
  const ch3 = new Channel<string>();
  const it = ch3[Symbol.asyncIterator]();
  const next = it.next();
  await new Loop().run(ch3.send("later"));
  assert.deepEqual(await next, { value: "later", done: false });
  assert.deepEqual(await it.return!(), { value: undefined, done: true });
  assert.equal(ch3.closed, true);
});

test("Channel: ReadableStream.from([...]).pipeTo(ch.writable) feeds coroutines, with back-pressure", async () => {
  const ch = new Channel<number>(2);
  let pulled = 0;
  const source = streamFrom((function* () {
    for (let i = 0; i < 100; i++) {
      pulled++;
      yield i;
    }
  })());
  const piped = source.pipeTo(ch.writable);
  let mostAhead = 0;
  function* consumer(into: number[]): Coro<number[]> {
    for (let r; !(r = yield* ch.receive()).done;) {
      into.push(r.value);
      mostAhead = Math.max(mostAhead, pulled - into.length);
      yield* fromPromise(delay(0)); // slower than the source
    }
    return into;
  }
  const got = await new Loop().run(consumer([]));
  await piped;
  assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => i));
  assert.equal(ch.closed, true, "the pipe closed the channel at the end");
  // Buffer (2), the value the writable holds (1), the one pipeTo has read: a few, not 100.
  assert.ok(mostAhead <= 6, `the source ran ${mostAhead} values ahead`);
});

test(
  "Channel: a Deno.serve handler streams new Response(ch.readable) fed by coroutines; the client going away cancels them",
  ["deno"],
  async () => {
    const stats = {
      started: 0,
      finallyRan: 0,
      runs: [] as Promise<unknown>[],
      channels: [] as Channel<Uint8Array>[],
    };
    const encoder = new TextEncoder();
    function* producer(ch: Channel<Uint8Array>, lines: number): Coro<void> {
      stats.started++;
      try {
        for (let i = 0; i < lines; i++) {
          yield* ch.send(encoder.encode(`line ${i}\n`));
          yield* sleep(2);
        }
        ch.close();
      } finally {
        stats.finallyRan++;
      }
    }
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
      const lines = Number(new URL(request.url).searchParams.get("lines"));
      const ch = new Channel<Uint8Array>();
      stats.channels.push(ch);
      // One run per request; the client going away aborts its signal too.
      stats.runs.push(
        toPromise(
          function* () {
            yield [producer(ch, lines), producer(ch, lines)];
          }(),
          { signal: request.signal },
        ).catch((e) => e),
      );
      return new Response(ch.readable, { headers: { "content-type": "text/plain" } });
    });
    try {
      const url = `http://127.0.0.1:${server.addr.port}/`;
      const body = await (await fetch(`${url}?lines=5`)).text();
      assert.equal(body.split("\n").filter(Boolean).length, 10, body);
      await stats.runs[0];
      assert.deepEqual([stats.started, stats.finallyRan], [2, 2]);

      // The client reads a little, then goes away.
      const client = new AbortController();
      const response = await fetch(`${url}?lines=100000`, { signal: client.signal });
      const reader = response.body!.getReader();
      await reader.read();
      client.abort();
      await assert.rejects(reader.read());
      const outcome = await stats.runs[1];
      assert.ok(
        outcome instanceof ChannelClosedError || (outcome as Error)?.name === "AbortError",
        `the run ended with ${outcome}`,
      );
      assert.equal(
        stats.channels[1].closed,
        true,
        "the response stream's cancel closed the channel",
      );
      assert.deepEqual([stats.started, stats.finallyRan], [4, 4], "both producers stopped");
    } finally {
      await server.shutdown();
    }
  },
);

// --- fromAsyncIterable -----------------------------------------------------------------------

test("fromAsyncIterable: an async generator's values, in order; the channel closes at its end", async () => {
  async function* numbers(): AsyncGenerator<number> {
    for (let i = 0; i < 50; i++) {
      if (i % 10 === 0) await delay(1);
      yield i;
    }
  }
  const got = await new Loop().run(function* () {
    const ch = yield* fromAsyncIterable(numbers(), { capacity: 4 });
    return yield* drain(ch);
  }());
  assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i));
});

test("fromAsyncIterable: reads only as fast as the channel takes values", async () => {
  let produced = 0;
  async function* endless(): AsyncGenerator<number> {
    for (;;) yield produced++;
  }
  let ahead = 0;
  await new Loop().run(function* () {
    const ch = yield* fromAsyncIterable(endless(), { capacity: 3 });
    for (let i = 0; i < 20; i++) {
      yield* ch.receive();
      yield* fromPromise(delay(0));
      ahead = Math.max(ahead, produced - (i + 1));
    }
    ch.close();
  }());
  assert.ok(ahead <= 5, `the generator ran ${ahead} values ahead of a capacity-3 channel`);
});

test("fromAsyncIterable: a consumer that closes early closes the async generator (its finally runs) and the run settles", async () => {
  const log: string[] = [];
  async function* source(): AsyncGenerator<number> {
    try {
      for (let i = 0;; i++) yield i;
    } finally {
      log.push("source finally");
    }
  }
  const got = await new Loop().run(function* () {
    const ch = yield* fromAsyncIterable(source(), { capacity: 2 });
    const first = [(yield* ch.receive()).value, (yield* ch.receive()).value];
    ch.close();
    return first;
  }());
  assert.deepEqual(got, [0, 1]);
  assert.deepEqual(log, ["source finally"], "the run settled after the generator was closed");
});

test("fromAsyncIterable: a cancelled run closes the async generator, also one busy at an await, and waits for it", async () => {
  const log: string[] = [];
  async function* slow(): AsyncGenerator<number> {
    try {
      yield 1;
      await delay(40); // the pump waits here when the run is cancelled
      yield 2;
    } finally {
      log.push("slow finally");
    }
  }
  const controller = new AbortController();
  const run = new Loop().run(
    function* () {
      const ch = yield* fromAsyncIterable(slow());
      log.push(`got ${(yield* ch.receive()).value}`);
      yield* ch.receive(); // waits while the generator awaits
    }(),
    { signal: controller.signal },
  );
  await delay(10);
  controller.abort(new Error("stop"));
  await assert.rejects(run, /stop/);
  assert.deepEqual(
    log,
    ["got 1", "slow finally"],
    "run settled only after the generator's finally",
  );

  // And a crash of the run while the pump is held up by a full channel.
  const log2: string[] = [];
  async function* many(): AsyncGenerator<number> {
    try {
      for (let i = 0;; i++) yield i;
    } finally {
      log2.push("many finally");
    }
  }
  const error = await new Loop().run(function* () {
    yield* fromAsyncIterable(many(), { capacity: 1 });
    yield* sleep(5);
    throw new Error("boom");
  }()).catch((e) => e);
  assert.equal(error.message, "boom");
  assert.deepEqual(log2, ["many finally"]);
});

test("fromAsyncIterable: a ReadableStream source is cancelled when the consumer closes early", async () => {
  const log: string[] = [];
  let i = 0;
  const stream = new ReadableStream<number>({
    pull(controller) {
      controller.enqueue(i++);
    },
    cancel(reason) {
      log.push(`cancelled (${reason})`);
    },
  });
  const got = await new Loop().run(function* () {
    const ch = yield* fromAsyncIterable(stream);
    const first = (yield* ch.receive()).value;
    ch.close();
    return first;
  }());
  assert.equal(got, 0);
  assert.equal(log.length, 1, "cancel() called once");
  // A stream that ends: the channel ends too.
  const words = await new Loop().run(function* () {
    return yield* drain(yield* fromAsyncIterable(streamFrom(["a", "b"])));
  }());
  assert.deepEqual(words, ["a", "b"]);
});

test("fromAsyncIterable: a source that throws fails the run with its error", async () => {
  const broken = new Error("source broke");
  async function* failing(): AsyncGenerator<number> {
    yield 1;
    await delay(1);
    throw broken;
  }
  const got: number[] = [];
  const error = await new Loop().run(function* () {
    const ch = yield* fromAsyncIterable(failing());
    yield* drain(ch, got);
  }()).catch((e) => e);
  assert.equal(error, broken, "the very error");
  assert.deepEqual(got, [1]);
  // A stream that errors, likewise.
  const streamError = new Error("stream broke");
  const failingStream = new ReadableStream({
    pull(controller) {
      controller.error(streamError);
    },
  });
  const error2 = await new Loop().run(function* () {
    yield* drain(yield* fromAsyncIterable(failingStream));
  }()).catch((e) => e);
  assert.equal(error2, streamError);
});

test("fromAsyncIterable: a source that ends early, or at once, ends the channel", async () => {
  async function* none(): AsyncGenerator<number> {}
  const got = await new Loop().run(function* () {
    const ch = yield* fromAsyncIterable(none());
    const r = yield* ch.receive();
    return [r.done, ch.closed];
  }());
  assert.deepEqual(got, [true, true]);
  // Any object with [Symbol.asyncIterator]; without return(), nothing to close.
  const iterable: AsyncIterable<string> = {
    [Symbol.asyncIterator]() {
      let n = 0;
      return {
        next: () =>
          Promise.resolve(
            n < 2 ? { value: `v${n++}`, done: false } : { value: undefined, done: true },
          ),
      };
    },
  };
  assert.deepEqual(
    await new Loop().run(function* () {
      return yield* drain(yield* fromAsyncIterable(iterable));
    }()),
    ["v0", "v1"],
  );
});

test("fromAsyncIterable: on a virtual clock, time jumps while the pump waits for room, not while it waits for its source", async () => {
  const loop = new Loop({ clock: "virtual" });
  async function* numbers(): AsyncGenerator<number> {
    for (let i = 0; i < 3; i++) {
      await delay(5); // outside work: the clock holds still meanwhile
      yield i;
    }
  }
  const t0 = performance.now();
  const got = await loop.run(function* () {
    const ch = yield* fromAsyncIterable(numbers(), { capacity: 0 });
    const out = [];
    for (let r; !(r = yield* ch.receive()).done;) {
      out.push([r.value, loop.now()]);
      yield* sleep(3_600_000); // an hour per value: instant
    }
    return out;
  }());
  assert.deepEqual(got, [[0, 0], [1, 3_600_000], [2, 7_200_000]]);
  assert.ok(performance.now() - t0 < 5_000);
});

// --- Bad input -------------------------------------------------------------------------------

test("bad input: new Channel(-1), (1.5), (NaN), ('3') are a RangeError or TypeError naming the value and the fix", () => {
  for (const bad of [-1, 1.5, NaN, -Infinity]) {
    assert.throws(() => new Channel(bad), (e: Error) => {
      assert.ok(e instanceof RangeError, String(e));
      assert.match(
        e.message,
        new RegExp(`^new Channel\\(\\): the capacity is ${bad}; give 0 \\(the default`),
      );
      assert.match(e.message, /a positive integer .* or Infinity/);
      return true;
    });
  }
  assert.throws(() => new Channel("3" as unknown as number), (e: Error) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /the capacity is "3"; give 0/);
    return true;
  });
  assert.equal(new Channel().trySend(1), false, "capacity 0 by default");
});

test("bad input: fromAsyncIterable(42), an array, a bad capacity or options are clear errors at the call", () => {
  assert.throws(() => fromAsyncIterable(42 as never), (e: Error) => {
    assert.ok(e instanceof TypeError);
    assert.match(
      e.message,
      /^fromAsyncIterable\(\): the source is 42 \(number\), not an async iterable; give an async generator, a ReadableStream/,
    );
    return true;
  });
  assert.throws(
    () => fromAsyncIterable([1, 2] as never),
    /not an async iterable.*For an array or another iterable, use `ReadableStream\.from\(items\)`/,
  );
  assert.throws(
    () => fromAsyncIterable(streamFrom([1]), { capacity: -2 }),
    /^RangeError: fromAsyncIterable\(source, \{ capacity \}\): the capacity is -2/,
  );
  assert.throws(
    () => fromAsyncIterable(streamFrom([1]), 5 as never),
    /options is 5 \(number\)/,
  );
});

test("bad input: yield ch is a TypeError thrown in at the yield that says to yield* ch.receive()", async () => {
  const ch = new Channel<number>();
  const caught = await new Loop().run(function* () {
    const errors: string[] = [];
    for (const bad of [() => ch, () => [ch], () => new Set([ch])]) {
      try {
        yield bad();
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    return errors;
  }());
  assert.match(
    caught[0],
    /^Invalid yield: a coroutine yielded an instance of Channel\. A Channel is not a coroutine: receive from it with `yield\* ch\.receive\(\)`/,
  );
  assert.match(
    caught[1],
    /element 0 of an array of 1 is an instance of Channel.*`yield\* ch\.receive\(\)`/,
  );
  assert.match(caught[2], /element 0 of a Set of 1 .*`yield\* ch\.send\(value\)`/);
  await assert.rejects(
    new Loop().run(ch as never),
    /got an instance of Channel\. A Channel is not a coroutine/,
  );
});

test("bad input: yielding an Event, a Semaphore, a Lock or a Barrier says how to wait on it", async () => {
  const cases: [object, RegExp][] = [
    [
      new Event(),
      /an instance of Event\. An Event is not a coroutine: wait for it with `yield\* event\.wait\(\)`/,
    ],
    [
      new Semaphore(1),
      /A Semaphore is not a coroutine: take a permit with `using _ = yield\* sem\.acquire\(\);`/,
    ],
    [new Lock(), /A Lock is not a coroutine: hold it with `using _ = yield\* lock\.acquire\(\);`/],
    [new Barrier(2), /A Barrier is not a coroutine: wait at it with `yield\* barrier\.wait\(\)`/],
  ];
  for (const [object, message] of cases) {
    const error = await new Loop().run(function* () {
      try {
        yield object;
      } catch (e) {
        return e;
      }
    }());
    assert.ok(error instanceof TypeError);
    assert.match((error as Error).message, message);
  }
});

// --- Across loops and runs -------------------------------------------------------------------------

test("Channel: a producer on one loop and consumers on another, running side by side", async () => {
  const ch = new Channel<number>(2);
  const [got] = await Promise.all([
    new Loop().run(function* () {
      const a: number[] = [];
      yield [drain(ch, a), drain(ch, a)];
      return a.toSorted((x, y) => x - y);
    }()),
    new Loop().run(function* () {
      for (let i = 0; i < 100; i++) {
        yield* ch.send(i);
        if (i % 7 === 0) yield* sleep(1);
      }
      ch.close();
    }()),
  ]);
  assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => i));
});

test("Channel: a coroutine cancelled while it waits on a channel runs its finally; the run settles", async () => {
  const empty = new Channel<number>();
  const full = new Channel<number>();
  const log: string[] = [];
  function* waiter(name: string, op: () => Coro<unknown>): Coro<void> {
    try {
      yield* op();
    } catch (e) {
      if (e instanceof CancelledError) log.push(`${name} cancelled`);
      throw e;
    } finally {
      log.push(`${name} finally`);
    }
  }
  const error = await new Loop().run(function* () {
    yield [
      waiter("receiver", () => empty.receive()),
      waiter("sender", () => full.send(1)),
      function* () {
        yield* pause(3);
        throw new Error("boom");
      }(),
    ];
  }()).catch((e) => e);
  assert.equal(error.message, "boom");
  assert.deepEqual(log.toSorted(), [
    "receiver cancelled",
    "receiver finally",
    "sender cancelled",
    "sender finally",
  ]);
});
