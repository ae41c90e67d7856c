/**
 * A command-line script you can stop: `deno run examples/cli.ts` (no permission flag).
 *
 * Four workers upload forty files (simulated), each over a connection of its own, while a
 * reporter prints the progress every second. It takes about five seconds; press Ctrl-C before
 * that, and `main` cancels every coroutine: each worker removes its half-done upload, says
 * goodbye to the server (asynchronously, through `shield`) and closes its connection, the
 * reporter stops, every `finally` block prints what it released, and the
 * script exits with code 130. Press Ctrl-C twice to exit without waiting for the cleanup.
 *
 * @module
 */
import { CancelledError, type Coro, Event, main, shield, sleep } from "../mod.ts";

const FILES = Array.from({ length: 40 }, (_, i) => ({
  name: `photo-${String(i + 1).padStart(2, "0")}.jpg`,
  kb: 200 + (i * 397) % 1800,
}));

/** A connection to the (imaginary) server; `using` closes it however the block ends. */
function connect(
  worker: number,
): Disposable & { send(kb: number): Coro<void>; goodbye(): Coro<void> } {
  console.log(`worker ${worker}: connected`);
  return {
    send: (kb) => sleep(kb / 2), // 2 kB per ms
    *goodbye() {
      yield sleep(50); // a round trip to the server
      console.log(`worker ${worker}: said goodbye to the server`);
    },
    [Symbol.dispose]() {
      console.log(`worker ${worker}: closed its connection`);
    },
  };
}

/** Takes the next file until none is left; the queue is shared, and nothing runs between yields. */
function* uploader(worker: number, queue: typeof FILES, done: string[]): Coro<void> {
  using connection = connect(worker);
  try {
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      let uploaded = false;
      try {
        yield* connection.send(file.kb);
        uploaded = true;
        done.push(file.name);
        console.log(`worker ${worker}: uploaded ${file.name} (${file.kb} kB)`);
      } finally {
        if (!uploaded) console.log(`worker ${worker}: removed the partial upload of ${file.name}`);
      }
    }
  } catch (error) {
    if (error instanceof CancelledError) console.log(`worker ${worker}: cancelled`);
    throw error; // always let a CancelledError through
  } finally {
    // Asynchronous cleanup, before `using` closes the connection: after a cancellation a
    // `finally` may wait only through `shield`, which runs the goodbye to its end.
    yield* shield(connection.goodbye());
  }
}

/** Prints the progress every second until `stop` is set. */
function* reporter(done: string[], stop: Event): Coro<void> {
  try {
    while (!(yield* stop.wait(1_000))) console.log(`progress: ${done.length}/${FILES.length}`);
  } finally {
    console.log("reporter: stopped");
  }
}

function* app(): Coro<number> {
  console.log(`uploading ${FILES.length} files with 4 workers; press Ctrl-C to stop`);
  const queue = [...FILES];
  const done: string[] = [];
  const stop = new Event();
  yield new Set([reporter(done, stop)]);
  try {
    yield [1, 2, 3, 4].map((worker) => uploader(worker, queue, done));
  } finally {
    stop.set();
  }
  console.log(`all ${done.length} files uploaded`);
  return done.length;
}

if (import.meta.main) await main(app);
