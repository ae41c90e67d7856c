/**
 * The demo (`deno task demo`, no permission flags): tinyio on a realistic job.
 *
 * Part 1. Three hundred documents go through a pipeline of stages connected
 * by channels: a source, downloaders (simulated I/O), hashers — key
 * stretching, real CPU work, on a `ThreadPool` — a store, and a progress
 * stage that draws a live progress line (plain lines when the output is not
 * a terminal), then a summary. The channels' bounded buffers keep every
 * stage at the pace of the next: a few documents in flight, whatever their
 * number. A `timeout` gives each hash a time budget and stops the stragglers
 * (a few documents are huge: their thread stops hashing too).
 *
 * Part 2. The same job, but the disk holds only 100 documents. One error
 * cancels everything — downloads asleep, hashes running on threads, stages
 * waiting on their channels — every `finally` block runs (downloaders delete
 * the downloads no stage took yet, asynchronously, through `shield`), and
 * `run` rejects with the very error that was thrown, once that cleanup is done.
 *
 * @module
 */
import { cancelled, Channel, type Coro, Loop, shield, sleep, ThreadPool, timeout } from "../mod.ts";

const DOCUMENTS = 300;
/** One document in this many is huge: far more hashing than its budget allows. */
const HUGE_EVERY = 60;
const THREADS = Math.max(2, Math.min(4, navigator.hardwareConcurrency));
/** Downloads at once: enough to keep every thread busy. */
const DOWNLOADERS = 3 * THREADS;
/** The time budget of one hash. */
const BUDGET_MS = 250;
/** Values that may wait between two stages. */
const BUFFER = 4;

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
  huge: boolean;
}

/** The inputs: pseudo-random but the same on every run. */
function makeDocuments(n: number): Document[] {
  let seed = 12345;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const words = ["loop", "yield", "cancel", "gather", "thread", "sleep", "event", "channel"];
  return Array.from({ length: n }, (_, id) => {
    const huge = id % HUGE_EVERY === HUGE_EVERY - 1;
    return {
      id,
      text: Array.from(
        { length: 4 + Math.floor(random() * 8) },
        () => words[Math.floor(random() * words.length)],
      ).join(" "),
      // Mostly 20 000 to 150 000 rounds; the huge ones, 10 million.
      rounds: huge ? 10_000_000 : Math.round(20_000 * 7.5 ** random()),
      huge,
    };
  });
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

/** A document and, once hashed in time, its digest (null: stopped at its budget). */
interface Hashed {
  doc: Document;
  digest: Digest | null;
}

type Where = "downloading" | "hashing" | "storing";

/** What happened in one job. */
class Tally {
  stored = 0;
  ok = 0;
  stopped: Document[] = [];
  rounds = 0;
  hashMs: number[] = [];
  /** Stage coroutines started, and those whose `finally` ran. */
  started = 0;
  finallyRan = 0;
  /** The documents being worked on now, and in which stage. */
  working = new Map<number, Where>();
  /** Downloads deleted by a downloader's `finally` after its CancelledError. */
  deleted = 0;
}

interface Job {
  docs: Document[];
  pool: ThreadPool;
  tally: Tally;
  /** How many documents the disk holds. */
  diskHolds: number;
}

/** Runs `body` as a stage coroutine: counted, with a `finally` that is counted too. */
function* stage(tally: Tally, body: Coro<void>): Coro<void> {
  tally.started++;
  try {
    yield* body;
  } finally {
    tally.finallyRan++;
  }
}

/** The source: every document into the first channel, then closes it. */
function* source(job: Job, out: Channel<Document>): Coro<void> {
  for (const doc of job.docs) yield* out.send(doc);
  out.close();
}

/**
 * One downloader: documents in, downloaded documents out. A download is on
 * disk until the next stage takes it; cancelled before that, the downloader
 * deletes it in its `finally` — asynchronous I/O, so through `shield`, which
 * runs it to its end (the run waits for it).
 */
function* download(job: Job, inbox: Channel<Document>, out: Channel<Document>): Coro<void> {
  for (let r; !(r = yield* inbox.receive()).done;) {
    const doc = r.value;
    let onDisk = true;
    try {
      job.tally.working.set(doc.id, "downloading");
      yield* sleep(1 + (doc.id * 7) % 5);
      job.tally.working.delete(doc.id);
      yield* out.send(doc);
      onDisk = false;
    } finally {
      if (onDisk) yield* shield(deleteDownload(job.tally));
    }
  }
}

/** Deletes a download that no stage took (simulated I/O). */
function* deleteDownload(tally: Tally): Coro<void> {
  yield* sleep(2);
  tally.deleted++;
}

/** One hasher: hashes a document on the pool, within its budget. */
function* hash(job: Job, inbox: Channel<Document>, out: Channel<Hashed>): Coro<void> {
  for (let r; !(r = yield* inbox.receive()).done;) {
    const doc = r.value;
    job.tally.working.set(doc.id, "hashing");
    const [digest, inTime] = yield* timeout(
      job.pool.runInThread(stretch, doc.text, doc.rounds),
      BUDGET_MS,
    );
    job.tally.working.delete(doc.id);
    // (`digest` is null only if `cancelled()` stopped it: then it is over budget too.)
    yield* out.send({ doc, digest: inTime ? digest : null });
  }
}

/** The store: keeps what was hashed in time, until the disk is full. */
function* store(job: Job, inbox: Channel<Hashed>, out: Channel<Hashed>): Coro<void> {
  for (let r; !(r = yield* inbox.receive()).done;) {
    const { doc, digest } = r.value;
    if (digest !== null) {
      if (job.tally.stored === job.diskHolds) {
        throw new Error(
          `disk full: ${job.tally.stored} documents stored, no room for document ${doc.id}`,
        );
      }
      job.tally.working.set(doc.id, "storing");
      yield* sleep(1);
      job.tally.working.delete(doc.id);
      job.tally.stored++;
    }
    yield* out.send(r.value);
  }
  out.close();
}

/** Runs `workers` and closes `out` once they are all done: their input was drained. */
function* allThen(workers: Coro<void>[], out: Channel<unknown>): Coro<void> {
  yield workers;
  out.close();
}

/** The progress display: one line rewritten in place on a terminal, a line per fifth elsewhere. */
function progress(tally: Tally): (done: number) => void {
  let lastDrawn = 0;
  let nextFifth = 1;
  return (done) => {
    const status = `${clock()}  ${String(done).padStart(3)}/${DOCUMENTS}  ` +
      `ok ${tally.ok}  timed out ${tally.stopped.length}`;
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

/** The last stage: counts each result as it comes, so `ok + timed out` is always `done`. */
function* report(job: Job, inbox: Channel<Hashed>): Coro<void> {
  const { tally } = job;
  const show = progress(tally);
  let done = 0;
  for (let r; !(r = yield* inbox.receive()).done;) {
    const { doc, digest } = r.value;
    if (digest === null) {
      tally.stopped.push(doc);
    } else {
      tally.ok++;
      tally.rounds += doc.rounds;
      tally.hashMs.push(digest.ms);
    }
    show(++done);
  }
  if (tty) Deno.stdout.writeSync(encoder.encode("\n"));
}

/** The whole pipeline: each stage a coroutine (or a pool of them), channels in between. */
function* runJob(job: Job): Coro<void> {
  const s = (body: Coro<void>) => stage(job.tally, body);
  const toDownload = new Channel<Document>(BUFFER);
  const toHash = new Channel<Document>(BUFFER);
  const toStore = new Channel<Hashed>(BUFFER);
  const toReport = new Channel<Hashed>(BUFFER);
  const downloaders = Array.from(
    { length: DOWNLOADERS },
    () => s(download(job, toDownload, toHash)),
  );
  const hashers = Array.from({ length: THREADS }, () => s(hash(job, toHash, toStore)));
  yield [
    s(source(job, toDownload)),
    allThen(downloaders, toHash),
    allThen(hashers, toStore),
    s(store(job, toStore, toReport)),
    s(report(job, toReport)),
  ];
}

function summary(tally: Tally, wallMs: number): void {
  const ms = [...tally.hashMs].sort((a, b) => a - b);
  const hashingMs = ms.reduce((sum, x) => sum + x, 0);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))].toFixed(0);
  const s = (x: number) => (x / 1000).toFixed(1);
  say(
    `done in ${s(wallMs)} s: ${tally.ok} documents hashed and stored, ` +
      `${tally.stopped.length} stopped at their ${BUDGET_MS} ms budget`,
  );
  say(
    `  hashing: ${(tally.rounds / 1e6).toFixed(1)} million rounds in ${
      s(hashingMs)
    } s of thread time`,
  );
  say(`  per document: median ${at(0.5)} ms, 95th percentile ${at(0.95)} ms, slowest ${at(1)} ms`);
  const ids = (docs: Document[]) => docs.map((d) => d.id).sort((a, b) => a - b).join(", ");
  const huge = tally.stopped.filter((d) => d.huge);
  const slow = tally.stopped.filter((d) => !d.huge);
  say(`  stopped: the huge documents ${ids(huge)}`);
  if (slow.length > 0) say(`  stopped too, out of time on a busy machine: documents ${ids(slow)}`);
}

const docs = makeDocuments(DOCUMENTS);
const loop = new Loop();
// One pool for both jobs, closed when the script ends. A pool that a coroutine
// closes while its run is cancelling would fail the calls still queued on it.
using pool = new ThreadPool(THREADS);

say(`part 1: ${DOCUMENTS} documents through a pipeline of stages connected by channels:`);
say(
  `  a source, ${DOWNLOADERS} downloaders, ${THREADS} hashers on a ThreadPool ` +
    `(${BUDGET_MS} ms each: timeout), a store, the progress line;`,
);
say(`  at most ${BUFFER} documents wait between two stages (back-pressure)`);
const tally = new Tally();
const start = performance.now();
await loop.run(runJob({ docs, pool, tally, diskHolds: Infinity }));
summary(tally, performance.now() - start);

const diskHolds = 100;
say("");
say(`part 2: the same job, but the disk holds only ${diskHolds} documents`);
const crashed = new Tally();
try {
  await loop.run(runJob({ docs, pool, tally: crashed, diskHolds }));
  say("the job finished: it should not have");
} catch (error) {
  const where = [...crashed.working.values()];
  const count = (w: Where) => where.filter((x) => x === w).length;
  say(`${clock()}  run rejected with the very error thrown: ${error}`);
  say(
    `  cancelled mid-work: ${count("hashing")} hashing (on a thread), ` +
      `${count("downloading")} downloading, ${count("storing")} storing; ` +
      `the other stages waiting on their channels`,
  );
  say(
    `  finally blocks run: ${crashed.finallyRan} of ${crashed.started} stage coroutines; ` +
      `nothing is left running`,
  );
  say(
    `  downloads deleted through shield after their CancelledError: ${crashed.deleted} ` +
      `(the run waited for that cleanup)`,
  );
}
