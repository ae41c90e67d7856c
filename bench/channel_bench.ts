/**
 * Channels under `deno bench`: the hot paths of a channel — 100 000 values
 * through a rendezvous (capacity 0, where every value is a hand-over) and
 * through a buffer of 64 (where most sends and receives need not wait), one
 * producer to one consumer and eight to eight; sends and receives that never
 * wait (a buffer of Infinity); and the async side, a `ReadableStream` piped
 * into coroutines. The side-by-side comparison with promises, effection and
 * Effect is in bench:compare (bench/compare.ts).
 *
 * `deno bench bench/channel_bench.ts` runs it.
 *
 * @module
 */

import { Channel, type Coro, Loop } from "../mod.ts";
import { throughChannel } from "./compare/tinyio.ts";

const VALUES = 100_000;

for (const capacity of [0, 64]) {
  for (const width of [1, 8]) {
    Deno.bench(`tinyio: 100 000 values, capacity ${capacity}, ${width} → ${width}`, {
      group: `capacity ${capacity}`,
      baseline: width === 1,
    }, async () => {
      await new Loop().run(throughChannel(capacity, width));
    });
  }
}

function* sendAll(ch: Channel<number>): Coro<void> {
  for (let i = 0; i < VALUES; i++) yield* ch.send(i);
}

function* receiveAll(ch: Channel<number>): Coro<number> {
  let sum = 0;
  for (let i = 0; i < VALUES; i++) sum += (yield* ch.receive()).value!;
  return sum;
}

Deno.bench("tinyio: 100 000 sends, then 100 000 receives, none waits", {
  group: "no wait",
}, async () => {
  const ch = new Channel<number>(Infinity);
  const loop = new Loop();
  await loop.run(sendAll(ch));
  await loop.run(receiveAll(ch));
});

Deno.bench("tinyio: 100 000 values from ReadableStream.from().pipeTo(ch.writable)", {
  group: "async side",
}, async () => {
  const ch = new Channel<number>(64);
  const piped = ReadableStream.from(Array.from({ length: VALUES }, (_, i) => i)).pipeTo(
    ch.writable,
  );
  const received = await new Loop().run(function* (): Coro<number> {
    let n = 0;
    while (!(yield* ch.receive()).done) n++;
    return n;
  }());
  await piped;
  if (received !== VALUES) throw new Error(`received ${received} values, not ${VALUES}`);
});
