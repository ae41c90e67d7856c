/**
 * The demo (`deno task demo`, no permission flags): tinyio on a realistic job.
 *
 * Part 1. Three hundred documents go through a pipeline: each is downloaded
 * (simulated I/O), hashed — key stretching, real CPU work, on a `ThreadPool`
 * — and stored. A `Semaphore` keeps a few documents in flight, a `timeout`
 * gives each one a time budget and stops the stragglers (a few documents are
 * huge: their thread stops hashing too), and `asCompleted` streams the
 * results in the order they finish into a live progress line (plain lines
 * when the output is not a terminal), then a summary.
 *
 * Part 2. The same job, but the disk fills up part-way. One error cancels
 * everything — downloads asleep, hashes running on threads, documents
 * waiting for the semaphore — every `finally` block runs (those of documents
 * with a partial download delete it, asynchronously, through `shield`), and
 * `run` rejects with the very error that was thrown, once that cleanup is done.
 *
 * @module
 */
import {
  asCompleted,
  cancelled,
  CancelledError,
  type Coro,
  join,
  Loop,
  Semaphore,
  shield,
  sleep,
  ThreadPool,
  timeout,
} from "../mod.ts";

const DOCUMENTS = 300;
/** One document in this many is huge: far more hashing than its budget allows. */
const HUGE_EVERY = 60;
const THREADS = Math.max(2, Math.min(4, navigator.hardwareConcurrency));
/** Documents in flight at once: enough to keep every thread busy while others download. */
const IN_FLIGHT = 3 * THREADS;
/** The time budget of one document, from the moment it is in flight. */
const BUDGET_MS = 250;

const tty = Deno.stdout.isTerminal();
const encoder = new TextEncoder();
const t0 = performance.now();
const clock = () => `${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s`;

/** Prints a line; on a terminal, over the progress line. */
function say(line: string): void {
  if (tty) Deno.stdout.writeSync(encoder.encode("\r\x1b[2K"));
  console.log(line);
}

interface Document {
  id: number;
  text: string;
  /** Hashing rounds, the CPU cost: about 10 ms per 100 000. */
  rounds: number;
}

/** The inputs: pseudo-random but the same on every run. */
function makeDocuments(n: number): Document[] {
  let seed = 12345;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const words = ["loop", "yield", "cancel", "gather", "thread", "sleep", "event", "permit"];
  return Array.from({ length: n }, (_, id) => ({
    id,
    text: Array.from(
      { length: 4 + Math.floor(random() * 8) },
      () => words[Math.floor(random() * words.length)],
    ).join(" "),
    // Mostly 20 000 to 150 000 rounds; the huge ones, 10 million.
    rounds: id % HUGE_EVERY === HUGE_EVERY - 1 ? 10_000_000 : Math.round(20_000 * 7.5 ** random()),
  }));
}

interface Digest {
  hash: string;
  ms: number;
}

/**
 * The CPU work, on a worker: `rounds` rounds of FNV-1a over the text, each
 * starting from the previous round's hash (key stretching, as password hashes
 * do). Self-contained, since it is sent to the worker as source text. It polls
 * `cancelled()`, so a document that times out or is cancelled stops hashing
 * at once, not when it is done.
 */
function stretch(text: string, rounds: number): Digest | null {
  const start = performance.now();
  let hash = 0x811c9dc5;
  for (let round = 0; round < rounds; round++) {
    if ((round & 1023) === 0 && cancelled()) return null;
    hash ^= round;
    for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  }
  return { hash: (hash >>> 0).toString(16).padStart(8, "0"), ms: performance.now() - start };
}

type Stage = "waiting" | "downloading" | "hashing" | "storing";

/** What happened to the documents of one job. */
class Tally {
  started = 0;
  finallyRan = 0;
  ok = 0;
  timedOut: number[] = [];
  stored = 0;
  rounds = 0;
  hashMs: number[] = [];
  cancelledWhile: Record<Stage, number> = { waiting: 0, downloading: 0, hashing: 0, storing: 0 };
  /** Partial downloads deleted by a `finally` that ran because of a CancelledError. */
  deletedAfterCancel = 0;
}

/**
 * Deletes the partial download of a document that was not stored: asynchronous
 * I/O. In a `finally` that runs because of a cancellation it goes through
 * `shield`, which runs it to its end, and the run waits for it.
 */
function* deletePartial(tally: Tally, cancelledNow: boolean): Coro<void> {
  yield sleep(2);
  if (cancelledNow) tally.deletedAfterCancel++;
}

interface Job {
  pool: ThreadPool;
  inFlight: Semaphore;
  tally: Tally;
  /** The disk is full when this many documents have been stored. */
  diskFullAt: number;
}

/** One document: wait for a place in flight, then download, hash and store it, within budget. */
function* processDocument(doc: Document, job: Job): Coro<Digest | null> {
  const { tally } = job;
  tally.started++;
  let stage: Stage = "waiting";
  let partial = false; // a download on disk that is not stored yet
  let cancelledNow = false;
  try {
    using _place = yield* job.inFlight.acquire();
    const [digest, inTime] = yield* timeout(
      function* (): Coro<Digest | null> {
        stage = "downloading";
        partial = true;
        yield sleep(1 + (doc.id * 7) % 5);
        stage = "hashing";
        const digest = yield* job.pool.runInThread(stretch, doc.text, doc.rounds);
        stage = "storing";
        yield sleep(1);
        if (++tally.stored === job.diskFullAt) throw new Error(`disk full (document ${doc.id})`);
        partial = false;
        return digest;
      }(),
      BUDGET_MS,
    );
    // (`digest` is null only if `cancelled()` stopped it, and then it is discarded.)
    if (!inTime || digest === null) {
      tally.timedOut.push(doc.id);
      return null;
    }
    tally.ok++;
    tally.rounds += doc.rounds;
    tally.hashMs.push(digest.ms);
    return digest;
  } catch (error) {
    if (error instanceof CancelledError) {
      tally.cancelledWhile[stage]++;
      cancelledNow = true;
    }
    throw error;
  } finally {
    if (partial) yield* shield(deletePartial(tally, cancelledNow));
    tally.finallyRan++;
  }
}

/** The progress display: one line rewritten in place on a terminal, a line per fifth elsewhere. */
function progress(tally: Tally): (done: number) => void {
  let lastDrawn = 0;
  let nextFifth = 1;
  return (done) => {
    const status = `${clock()}  ${String(done).padStart(3)}/${DOCUMENTS}  ` +
      `ok ${tally.ok}  timed out ${tally.timedOut.length}`;
    if (tty) {
      const now = performance.now();
      if (now - lastDrawn < 50 && done < DOCUMENTS) return;
      lastDrawn = now;
      const bar = "#".repeat(Math.round(30 * done / DOCUMENTS)).padEnd(30, ".");
      Deno.stdout.writeSync(encoder.encode(`\r\x1b[2K[${bar}] ${status}`));
    } else if (5 * done >= nextFifth * DOCUMENTS) {
      nextFifth++;
      console.log(status);
    }
  };
}

/** Every document, at most IN_FLIGHT at a time; counts results as they come. */
function* runJob(docs: Document[], job: Job): Coro<number> {
  const show = progress(job.tally);
  const work = docs.map((doc) => processDocument(doc, job));
  let done = 0;
  for (const next of yield* asCompleted(work)) {
    yield* join(next);
    show(++done);
  }
  if (tty) Deno.stdout.writeSync(encoder.encode("\n"));
  return done;
}

function summary(tally: Tally, wallMs: number): void {
  const ms = [...tally.hashMs].sort((a, b) => a - b);
  const hashingMs = ms.reduce((sum, x) => sum + x, 0);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))].toFixed(0);
  const s = (x: number) => (x / 1000).toFixed(1);
  say(
    `done in ${s(wallMs)} s: ${tally.ok} documents hashed and stored, ` +
      `${tally.timedOut.length} stopped at their ${BUDGET_MS} ms budget`,
  );
  say(
    `  hashing: ${(tally.rounds / 1e6).toFixed(1)} million rounds in ${
      s(hashingMs)
    } s of thread time`,
  );
  say(`  per document: median ${at(0.5)} ms, 95th percentile ${at(0.95)} ms, slowest ${at(1)} ms`);
  say(`  stopped: documents ${tally.timedOut.sort((a, b) => a - b).join(", ")}, the huge ones`);
}

const docs = makeDocuments(DOCUMENTS);
const loop = new Loop();
// One pool for both jobs, closed when the script ends. A pool that a coroutine
// closes while its run is cancelling would fail the calls still queued on it.
using pool = new ThreadPool(THREADS);

say(
  `part 1: ${DOCUMENTS} documents, each downloaded, hashed on a ThreadPool of ${THREADS}, stored;`,
);
say(
  `  at most ${IN_FLIGHT} in flight (Semaphore), ${BUDGET_MS} ms each (timeout), streamed (asCompleted)`,
);
const tally = new Tally();
const start = performance.now();
const inFlight = new Semaphore(IN_FLIGHT);
await loop.run(runJob(docs, { pool, inFlight, tally, diskFullAt: Infinity }));
summary(tally, performance.now() - start);

const diskFullAt = 100;
say("");
say(`part 2: the same job, but the disk is full after ${diskFullAt - 1} documents`);
const crashed = new Tally();
try {
  await loop.run(runJob(docs, { pool, inFlight, tally: crashed, diskFullAt }));
  say("the job finished: it should not have");
} catch (error) {
  const { waiting, downloading, hashing, storing } = crashed.cancelledWhile;
  say(`${clock()}  run rejected with the very error thrown: ${error}`);
  say(
    `  cancelled: ${hashing} hashing (on a thread or queued), ${downloading} downloading, ` +
      `${storing} storing, ${waiting} waiting for a place`,
  );
  say(
    `  finally blocks run: ${crashed.finallyRan} of ${crashed.started} documents started; ` +
      `nothing is left running`,
  );
  say(
    `  partial downloads deleted through shield after their CancelledError: ` +
      `${crashed.deletedAfterCancel} (the run waited for that cleanup)`,
  );
}
