// A TypeScript program on Node that uses the package through its published
// declarations only (tests/types/check.ts compiles it with tsc --strict,
// @types/node and skipLibCheck: false). Not run: it is compiled.
import {
  asCompleted,
  CancelledError,
  type Coro,
  Event,
  fromPromise,
  isolate,
  join,
  Lock,
  Loop,
  type Permit,
  runInThread,
  Semaphore,
  sleep,
  ThreadPool,
  timeout,
  toPromise,
} from "@tinyio/core";

function* add(a: number, b: number): Coro<number> {
  yield sleep(1);
  return a + b;
}

function* main(): Coro<string> {
  const three: number = yield* join(add(1, 2));
  const [result, inTime] = yield* timeout(add(3, three), 100);
  const fetched: string = yield* fromPromise(Promise.resolve("text"));
  const lock = new Lock();
  const permit: Permit = yield* lock.acquire();
  permit.release();
  using _ = yield* new Semaphore(2).acquire();
  const ev = new Event();
  ev.set();
  const woken: boolean = yield* ev.wait(10);
  for (const next of yield* asCompleted([add(1, 1), add(2, 2)])) {
    const n: number = yield next;
    void n;
  }
  const [value, ok] = yield* isolate(add(4, 5));
  const doubled: number = yield* runInThread((x: number) => x * 2, 21);
  using pool = new ThreadPool(2, { permissions: "none" });
  const squares: number[] = yield* pool.map((x: number) => x * x, [1, 2, 3]);
  return `${result} ${inTime} ${fetched} ${woken} ${value} ${ok} ${doubled} ${squares}`;
}

const loop = new Loop({ clock: "virtual" });
const out: string = await loop.run(main(), { signal: AbortSignal.timeout(1_000) });
const again: string = await toPromise(main());
console.log(out, again, loop.now(), new CancelledError("x").name);
