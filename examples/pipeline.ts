/**
 * The demo (`deno task demo`): tinyio at work.
 *
 * It gathers coroutines, starts one in the background, sleeps, and then shows
 * what happens when one coroutine fails: every other coroutine gets a
 * `CancelledError` at the `yield` where it waits, its `finally` block runs,
 * and `run` rejects with the very error that was thrown.
 */
import { CancelledError, type Coro, Event, Loop, sleep } from "../mod.ts";

const t0 = performance.now();
const log = (msg: string) =>
  console.log(`${(performance.now() - t0).toFixed(0).padStart(5)} ms  ${msg}`);

function* fetchUser(id: number): Coro<string> {
  yield sleep(20 + 10 * id);
  return `user-${id}`;
}

function* heartbeat(stop: Event): Coro<number> {
  let beats = 0;
  while (!stop.isSet()) {
    yield stop.wait(15);
    beats++;
  }
  return beats;
}

function* happyPath(): Coro<void> {
  log("part 1: gather three coroutines, with a heartbeat in the background");
  const stop = new Event();
  const beat = heartbeat(stop);
  yield new Set([beat]);
  const users: string[] = yield [fetchUser(1), fetchUser(2), fetchUser(3)];
  log(`gathered ${users.join(", ")}`);
  stop.set();
  const beats: number = yield beat;
  log(`the heartbeat stopped after ${beats} beats`);
}

function* worker(name: string, ms: number): Coro<void> {
  try {
    log(`${name}: working for ${ms} ms`);
    yield sleep(ms);
    log(`${name}: done`);
  } catch (e) {
    if (e instanceof CancelledError) log(`${name}: cancelled (${(e.cause as Error).message})`);
    throw e;
  } finally {
    log(`${name}: finally block ran, resources released`);
  }
}

function* faulty(): Coro<void> {
  yield sleep(30);
  throw new Error("the disk is full");
}

function* crashPath(): Coro<void> {
  log("part 2: one coroutine fails while two others work");
  yield [worker("download", 1_000), worker("encode", 2_000), faulty()];
}

const loop = new Loop();
await loop.run(happyPath());
try {
  await loop.run(crashPath());
} catch (e) {
  log(`run rejected with the original error: ${(e as Error).message}`);
}
