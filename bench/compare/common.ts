/**
 * What the comparison's parts share: the workloads, their sizes and units,
 * and the measuring helpers used inside each fresh process.
 *
 * @module
 */

/** The workloads of the comparison, in the order of the table. */
export const WORKLOADS = [
  "steps",
  "fanout",
  "chain",
  "chainDeep",
  "sleepers",
  "semaphore",
  "memory",
  "memoryBare",
  "channel0",
  "channel1",
  "channel64",
  "channel0x8",
  "channel1x8",
  "channel64x8",
  "memoryReceive",
  "memorySend",
  "roundTrip",
  "startUp",
  "pool",
  "poolLockstep",
  "race2",
  "race100",
  "cancellable",
] as const;

/** One workload's name. */
export type Workload = typeof WORKLOADS[number];

/** The sizes the table names. */
export const SIZE = {
  steps: 1_000_000,
  fanout: 100_000,
  chain: 10_000,
  chainDeep: 1_000_000,
  sleepers: 10_000,
  sleepMs: 10,
  semaphoreTasks: 20_000,
  semaphoreCapacity: 8,
  memory: 200_000,
  // A fresh worker runs its side of the protocol in V8's interpreter at first:
  // "warm" means after enough calls for its JIT (the bare echo needs none).
  roundTripsWarmUp: 3_000,
  roundTrips: 2_000,
  poolTasks: 10_000,
  /** Races of 2 (and cancellables) per run; races of 100 per run. */
  races: 10_000,
  wideRaces: 1_000,
  /** Values through a channel in each channel workload, split evenly among the producers. */
  channelValues: 100_000,
} as const;

/** The channel workloads: their capacity, and how many producers and consumers (each) they have. */
export const CHANNELS = {
  channel0: { capacity: 0, width: 1 },
  channel1: { capacity: 1, width: 1 },
  channel64: { capacity: 64, width: 1 },
  channel0x8: { capacity: 0, width: 8 },
  channel1x8: { capacity: 1, width: 8 },
  channel64x8: { capacity: 64, width: 8 },
} as const;

/** One channel workload's name. */
export type ChannelWorkload = keyof typeof CHANNELS;

/** The sum of the values every channel workload moves: 0, 1, … sent by each producer, added up. */
export function channelChecksum(width: number): number {
  const each = SIZE.channelValues / width;
  return width * each * (each - 1) / 2;
}

/**
 * A contender's channel rows, from its `through(capacity, width)`, which
 * moves `SIZE.channelValues` values from `width` producers (each sending 0,
 * 1, … `SIZE.channelValues / width - 1`) to `width` consumers through one
 * channel of that capacity, closes it, and resolves with the sum the
 * consumers received (checked, so that a contender cannot skip the work).
 */
export function channelRows(
  through: (capacity: number, width: number) => Promise<number>,
): Contender {
  const rows: Contender = {};
  for (const [workload, { capacity, width }] of Object.entries(CHANNELS)) {
    rows[workload as ChannelWorkload] = () =>
      timeMs(async () => {
        const sum = await through(capacity, width);
        if (sum !== channelChecksum(width)) {
          throw new Error(`${workload}: received a sum of ${sum}, not ${channelChecksum(width)}`);
        }
      });
  }
  return rows;
}

/** A time measured in alternation with the bare-generator floor, in one process. */
export interface VsFloor {
  /** The median time of the work, in ms. */
  value: number;
  /** The median time of the floor, in ms. */
  floor: number;
  /** The median of the ratios work / floor of runs made one right after the other. */
  ratio: number;
}

/**
 * A contender's implementation of a workload. It returns the figure in the
 * raw unit of the workload (ms for timed ones; see `ROWS` in
 * bench/compare.ts), that figure next to the floor (steps), or a string
 * saying why it cannot run (a missing export, a stack overflow).
 */
export type Impl = () => Promise<number | string | VsFloor>;

/** A contender: a name for the table and the workloads it implements. */
export type Contender = Partial<Record<Workload, Impl>>;

const gcHook = (globalThis as { gc?: () => void }).gc;

/** Collects garbage fully (needs `--v8-flags=--expose-gc`). */
export function gc(): void {
  if (gcHook === undefined) throw new Error("run with --v8-flags=--expose-gc");
  gcHook();
  gcHook();
}

/** The heap in use after a full collection, in bytes. */
export function heapAfterGc(): number {
  gc();
  gc();
  return Deno.memoryUsage().heapUsed;
}

/**
 * Times `work` in milliseconds, once the JIT has warmed up: it runs `work`
 * until five runs or half a second have passed (at least two runs; a loop
 * reaches its optimized code after three or four runs of a million steps),
 * then five timed runs, each after a full collection so that no run pays for
 * the garbage of the one before; returns their median. A run over a second is
 * a slow peer whose JIT has long warmed up: that one run is the figure.
 */
export async function timeMs(work: () => unknown): Promise<number> {
  const once = async () => {
    gc();
    const start = performance.now();
    await work();
    return performance.now() - start;
  };
  const first = await once();
  if (first > 1_000) return first;
  let warm = first;
  for (let runs = 1; runs < 5 && (runs < 2 || warm < 500); runs++) warm += await once();
  const timed: number[] = [];
  for (let i = 0; i < 5; i++) timed.push(await once());
  return median(timed);
}

/**
 * Times `work` like {@linkcode timeMs}, each run right after a run of the
 * floor (`SIZE.steps` bare `gen.next()` steps), so that the ratio of the two
 * holds even when a neighbour's load changes the machine's speed halfway.
 */
export function timeVsFloor(work: () => unknown): Promise<VsFloor> {
  return timeVs(work, () => bareSteps(SIZE.steps));
}

/**
 * Times `work` like {@linkcode timeMs}, each run right after a run of
 * `floor` (the same work done the plainest way), so that the ratio of the
 * two holds even when a neighbour's load changes the machine's speed halfway.
 */
export async function timeVs(work: () => unknown, floor: () => unknown): Promise<VsFloor> {
  const once = async (what: () => unknown) => {
    gc();
    const start = performance.now();
    await what();
    return performance.now() - start;
  };
  const first = await once(work);
  if (first > 1_000) {
    const f = await once(floor);
    return { value: first, floor: f, ratio: first / f };
  }
  let warm = first + await once(floor);
  for (let runs = 1; runs < 5 && (runs < 2 || warm < 500); runs++) {
    warm += await once(floor) + await once(work);
  }
  const works: number[] = [];
  const floors: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < 7; i++) {
    floors.push(await once(floor));
    works.push(await once(work));
    ratios.push(works[i] / floors[i]);
  }
  return { value: median(works), floor: median(floors), ratio: median(ratios) };
}

function* spin(n: number): Generator<void, void, unknown> {
  for (let i = 0; i < n; i++) yield;
}

/** Steps a fresh generator `n` times by hand: the cheapest possible suspension. */
export function bareSteps(n: number): void {
  const g = spin(n);
  while (g.next().done !== true);
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Resolves once `ready()` holds, checking every millisecond. */
export async function until(ready: () => boolean): Promise<void> {
  while (!ready()) await new Promise((resolve) => setTimeout(resolve, 1));
}

/**
 * Measures bytes per parked coroutine: `park(n)` starts `n` coroutines that
 * each suspend until `release()` is called, and resolves once all of them are
 * parked; the heap grown by then, after a full collection, divided by `n`.
 * A small warm-up round runs first so compiled code is not counted.
 */
export async function bytesPerParked(
  park: (n: number) => Promise<{ release: () => void; done: Promise<unknown> }>,
): Promise<number> {
  const warm = await park(1_000);
  warm.release();
  await warm.done;
  const n = SIZE.memory;
  const before = heapAfterGc();
  const parked = await park(n);
  // Let the scheduler go idle (a loop's slice, an effection tick) first.
  await new Promise((resolve) => setTimeout(resolve, 20));
  const after = heapAfterGc();
  parked.release();
  await parked.done;
  return (after - before) / n;
}

/** The source of the echo worker that the bare `postMessage` baselines use. */
export const ECHO_WORKER = "self.onmessage = (e) => self.postMessage(e.data);";

/** A module URL for a worker made from `source` (needs no permission). */
export function blobUrl(source: string): string {
  return URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
}
