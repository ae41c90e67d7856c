/**
 * The side-by-side comparison (`deno task bench:compare`): every workload of
 * the performance issue, for @tinyio/core, plain async/await, effection,
 * Effect and the bare engine floor. Each measurement runs in a fresh process
 * (bench/compare/run_one.ts), several times, interleaved so that the
 * machine's noise spreads over all contenders; the table shows medians, and
 * the targets are checked on ratios measured in this same run.
 *
 * Options: `--reps=N` (processes per cell, default 5), `--only=steps,fanout`
 * (workloads), `--contenders=tinyio,plain`, `--write` (also write
 * bench/RESULTS.md).
 *
 * @module
 */

import { CHANNELS, median, SIZE, type Workload, WORKLOADS } from "./compare/common.ts";
import { type ContenderName, CONTENDERS } from "./compare/run_one.ts";

const COLUMNS: Record<ContenderName, string> = {
  tinyio: "@tinyio/core",
  plain: "plain async/await",
  effection: "effection",
  effect: "Effect",
  effect3: "Effect 3",
  floor: "floor",
};

interface Row {
  label: string;
  unit: string;
  /** From the raw figure a process prints (ms for timed workloads) to the unit. */
  scale: (raw: number) => number;
  /** Extra V8 flags for this workload's processes. */
  v8?: string;
}

const perStep = (ms: number) => ms * 1e6 / SIZE.steps;
const same = (x: number) => x;

const ROWS: Record<Workload, Row> = {
  steps: {
    label: "steps: one coroutine suspends 1 000 000 times",
    unit: "ns/step",
    scale: perStep,
  },
  fanout: { label: "fanout: gather 100 000 children that suspend once", unit: "ms", scale: same },
  chain: {
    label: "chain: coroutine i awaits i+1, depth 10 000 (4 MB stack for all)",
    unit: "ms",
    scale: same,
    v8: "--stack-size=4000",
  },
  chainDeep: { label: "chain: depth 1 000 000, default stack", unit: "ms", scale: same },
  sleepers: {
    label: "sleepers: 10 000 concurrent 10 ms sleeps, gathered",
    unit: "ms",
    scale: same,
  },
  semaphore: {
    label: "semaphore: 20 000 tasks through capacity 8, one suspension inside",
    unit: "ms",
    scale: same,
  },
  memory: { label: "memory: per suspended coroutine, 200 000 parked", unit: "B", scale: same },
  memoryBare: {
    label: "memory: per coroutine parked on a bare Wait (the loop's own bookkeeping)",
    unit: "B",
    scale: same,
  },
  ...channelRowLabels(),
  memoryReceive: {
    label: "memory: per coroutine parked in a channel receive, 200 000 parked",
    unit: "B",
    scale: same,
  },
  memorySend: {
    label: "memory: per coroutine parked in a channel send, 200 000 parked",
    unit: "B",
    scale: same,
  },
  roundTrip: { label: "worker: warm round trip of a trivial task", unit: "µs", scale: same },
  startUp: { label: "worker: start-up (first call in a fresh process)", unit: "ms", scale: same },
  pool: {
    label: "worker: 10 000 tiny tasks, ThreadPool(2) / 2 bare workers all posted at once",
    unit: "tasks/s",
    scale: same,
  },
  poolLockstep: {
    label: "worker: 10 000 tiny tasks, 2 bare workers, one task in flight each",
    unit: "tasks/s",
    scale: same,
  },
};

/** The labels of the channel rows: `SIZE.channelValues` values, capacity, producers → consumers. */
function channelRowLabels(): Record<keyof typeof CHANNELS, Row> {
  const rows = {} as Record<keyof typeof CHANNELS, Row>;
  for (const [workload, { capacity, width }] of Object.entries(CHANNELS)) {
    rows[workload as keyof typeof CHANNELS] = {
      label: `channel: ${format(SIZE.channelValues)} values, capacity ${capacity}, ` +
        `${width} producer${width > 1 ? "s" : ""} → ${width} consumer${width > 1 ? "s" : ""}`,
      unit: "ms",
      scale: same,
    };
  }
  return rows;
}

/** What one cell holds after the run: the median, or why there is none. */
interface Cell {
  value?: number;
  note?: string;
  /** steps only: the median of (contender / floor) measured in the same process. */
  vsFloor?: number;
}

function option(name: string): string | undefined {
  const arg = Deno.args.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (arg === undefined) return undefined;
  return arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : "";
}

function list<T extends string>(name: string, all: readonly T[]): T[] {
  const given = option(name);
  if (given === undefined) return [...all];
  const picked = given.split(",") as T[];
  for (const p of picked) {
    if (!all.includes(p)) throw new Error(`--${name}: ${p} is not one of ${all.join(", ")}`);
  }
  return picked;
}

const reps = Number(option("reps") ?? 5);
const workloads = list("only", WORKLOADS);
const contenders = list("contenders", CONTENDERS);
const runOne = new URL("./compare/run_one.ts", import.meta.url).pathname;
const TIMEOUT_MS = 180_000;

/** Runs one measurement in a fresh process; returns its figure, or why there is none. */
async function measure(
  who: ContenderName,
  workload: Workload,
): Promise<{ value: number | string | null; ratio?: number }> {
  const v8 = ["--expose-gc", ROWS[workload].v8].filter(Boolean).join(",");
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", `--v8-flags=${v8}`, runOne, who, workload],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  try {
    const { success, stdout, stderr } = await command.output();
    const text = new TextDecoder().decode(stdout).trim().split("\n").pop() ?? "";
    if (!success) {
      const err = new TextDecoder().decode(stderr).trim().split("\n")[0] ?? "";
      return { value: `failed: ${err.slice(0, 80)}` };
    }
    return JSON.parse(text);
  } catch (e) {
    if (e instanceof DOMException && e.name === "TimeoutError") {
      return { value: `over ${TIMEOUT_MS / 1000} s` };
    }
    throw e;
  }
}

/** Every measurement, interleaved: each repetition goes once over every cell. */
async function measureAll(): Promise<Map<string, Cell>> {
  const raw = new Map<string, { values: number[]; ratios: number[]; notes: string[] }>();
  for (let rep = 1; rep <= reps; rep++) {
    for (const workload of workloads) {
      for (const who of contenders) {
        const key = `${workload}/${who}`;
        const got = await measure(who, workload);
        if (got.value === null) continue; // the contender has no such workload
        const entry = raw.get(key) ?? { values: [], ratios: [], notes: [] };
        raw.set(key, entry);
        if (typeof got.value === "string") {
          entry.notes.push(got.value);
        } else {
          entry.values.push(got.value);
          if (got.ratio !== undefined) entry.ratios.push(got.ratio);
        }
        const shown = typeof got.value === "number"
          ? `${format(ROWS[workload].scale(got.value))} ${ROWS[workload].unit}`
          : got.value;
        console.error(`  [${rep}/${reps}] ${key}: ${shown}`);
      }
    }
  }
  const cells = new Map<string, Cell>();
  for (const [key, { values, ratios, notes }] of raw) {
    const workload = key.split("/")[0] as Workload;
    cells.set(
      key,
      values.length > 0
        ? {
          value: ROWS[workload].scale(median(values)),
          vsFloor: ratios.length > 0 ? median(ratios) : undefined,
          note: notes.length > 0 ? `${notes.length} of ${reps} runs: ${notes[0]}` : undefined,
        }
        : { note: notes[0] },
    );
  }
  return cells;
}

/** A figure with three significant digits, thousands grouped by spaces. */
function format(x: number): string {
  const digits = x >= 100 ? 0 : x >= 10 ? 1 : 2;
  const [whole, frac] = x.toFixed(digits).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, " ");
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}

function cellText(workload: Workload, cell: Cell | undefined): string {
  if (cell === undefined) return "—";
  if (cell.value === undefined) return cell.note ?? "—";
  let text = `${format(cell.value)} ${ROWS[workload].unit}`;
  if (cell.vsFloor !== undefined) text += ` (${cell.vsFloor.toFixed(2)}× floor)`;
  if (cell.note !== undefined) text += ` (${cell.note})`;
  return text;
}

function table(cells: Map<string, Cell>): string {
  const header = ["workload", ...contenders.map((c) => COLUMNS[c])];
  const lines = [
    `| ${header.join(" | ")} |`,
    `| --- | ${contenders.map(() => "---:").join(" | ")} |`,
  ];
  for (const workload of workloads) {
    const row = contenders.map((c) => cellText(workload, cells.get(`${workload}/${c}`)));
    lines.push(`| ${ROWS[workload].label} | ${row.join(" | ")} |`);
  }
  return lines.join("\n");
}

/** The targets of the issue, each checked on this run's medians. */
function targets(cells: Map<string, Cell>): string[] {
  const v = (workload: Workload, who: ContenderName) => cells.get(`${workload}/${who}`)?.value;
  const out: string[] = [];
  const check = (name: string, measured: number | undefined, limit: string, ok: boolean) => {
    out.push(
      measured === undefined || Number.isNaN(measured)
        ? `- n/a  ${name}: not measured in this run`
        : `- ${ok ? "PASS" : "FAIL"} ${name}: ${measured.toFixed(2)} (target ${limit})`,
    );
  };
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? undefined : a / b;

  const steps = cells.get("steps/tinyio")?.vsFloor;
  if (workloads.includes("steps")) {
    check("steps: tinyio / bare-generator floor, same process", steps, "≤ 2.0", steps! <= 2);
  }
  if (workloads.includes("fanout")) {
    const r = ratio(v("fanout", "tinyio"), v("fanout", "plain"));
    check("fanout 100 000: tinyio / Promise.all", r, "≤ 1.5", r! <= 1.5);
  }
  if (workloads.includes("chainDeep")) {
    const deep = cells.get("chainDeep/tinyio");
    out.push(
      deep?.value !== undefined && deep.note === undefined
        ? `- PASS chain depth 1 000 000 completes: ${format(deep.value)} ms`
        : `- FAIL chain depth 1 000 000 completes: ${deep?.note ?? "not measured"}`,
    );
  }
  if (workloads.includes("chain")) {
    const r = ratio(v("chain", "tinyio"), v("chain", "plain"));
    check("chain 10 000: tinyio / async-await", r, "≤ 3", r! <= 3);
  }
  if (workloads.includes("sleepers")) {
    const limit = 1.2 * SIZE.sleepMs + 10;
    check(
      `sleepers: tinyio total, ms`,
      v("sleepers", "tinyio"),
      `≤ ${limit}`,
      v("sleepers", "tinyio")! <= limit,
    );
  }
  if (workloads.includes("semaphore")) {
    const r = ratio(v("semaphore", "tinyio"), v("semaphore", "plain"));
    check("semaphore: tinyio / FIFO promise semaphore", r, "≤ 2", r! <= 2);
  }
  if (workloads.includes("memory")) {
    check(
      "memory: tinyio bytes per parked coroutine",
      v("memory", "tinyio"),
      "≤ 400",
      v("memory", "tinyio")! <= 400,
    );
  }
  for (const workload of Object.keys(CHANNELS) as (keyof typeof CHANNELS)[]) {
    if (!workloads.includes(workload)) continue;
    const vsPlain = ratio(v(workload, "plain"), v(workload, "tinyio"));
    check(`${workload}: promise channel / tinyio (speed ratio)`, vsPlain, "≥ 1.0", vsPlain! >= 1);
    const vsEffection = ratio(v(workload, "effection"), v(workload, "tinyio"));
    check(`${workload}: effection / tinyio (speed ratio)`, vsEffection, "≥ 10", vsEffection! >= 10);
  }
  // A parked channel waiter costs what a parked Event waiter does: its operation (48 B) and its
  // place in the queue. A sender's generator also keeps the argument of `send` in its frame: 8 B
  // (measured: `yield* ev.wait(Infinity)` costs the same 8 B more than `yield* ev.wait()`, and a
  // send made by a helper without an argument, `yield* sendZero()`, as much as an Event waiter).
  if (workloads.includes("memoryReceive")) {
    const r = v("memoryReceive", "tinyio");
    const event = v("memory", "tinyio");
    const limit = event ?? 381;
    check(
      `memoryReceive: tinyio bytes per coroutine parked in yield* ch.receive()`,
      r,
      `≤ ${format(limit)} (+1 B of noise), as yield* ev.wait()${
        event === undefined ? " in bench/RESULTS.md" : ""
      }`,
      r! <= limit + 1,
    );
  }
  if (workloads.includes("memorySend")) {
    const r = v("memorySend", "tinyio");
    const event = v("memory", "tinyio");
    const limit = (event ?? 381) + 8;
    check(
      `memorySend: tinyio bytes per coroutine parked in yield* ch.send(v)`,
      r,
      `≤ ${
        format(limit)
      } (+1 B of noise): yield* ev.wait() + 8 B, the argument in the caller's frame`,
      r! <= limit + 1,
    );
  }
  if (workloads.includes("roundTrip")) {
    const r = ratio(v("roundTrip", "tinyio"), v("roundTrip", "plain"));
    check("threads: runInThread round trip / bare postMessage", r, "≤ 1.5", r! <= 1.5);
  }
  if (workloads.includes("pool")) {
    const r = ratio(v("pool", "tinyio"), v("pool", "plain"));
    check("threads: ThreadPool(2) throughput / bare postMessage", r, "≥ 0.7", r! >= 0.7);
  }
  for (const workload of ["steps", "fanout"] as const) {
    if (!workloads.includes(workload)) continue;
    const vsEffection = ratio(v(workload, "effection"), v(workload, "tinyio"));
    check(`${workload}: effection / tinyio`, vsEffection, "≥ 5", vsEffection! >= 5);
    // The issue set "≥ 50× Effect" against Effect 3.22.4, the version it
    // measured; Effect 4, released since, is shown beside it, not judged.
    const vsEffect3 = ratio(v(workload, "effect3"), v(workload, "tinyio"));
    check(`${workload}: Effect 3.22.4 / tinyio`, vsEffect3, "≥ 50", vsEffect3! >= 50);
    const vsEffect = ratio(v(workload, "effect"), v(workload, "tinyio"));
    if (vsEffect !== undefined) {
      out.push(`- (not a target) ${workload}: Effect 4 / tinyio: ${format(vsEffect)}`);
    }
  }
  return out;
}

async function versions(): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const imports: Record<string, string> = config.imports ?? {};
  const peers = ["effection", "effect", "effect3"].map((name) =>
    imports[name] ?? `${name} (not pinned)`
  );
  return `Deno ${Deno.version.deno}, V8 ${Deno.version.v8}; peers: ${peers.join(", ")}`;
}

async function machine(): Promise<string> {
  let cpu = "unknown CPU";
  try {
    // Deno reads /proc only with --allow-all; `cat` needs just the --allow-run we have.
    const { stdout } = await new Deno.Command("cat", { args: ["/proc/cpuinfo"] }).output();
    cpu = new TextDecoder().decode(stdout).match(/^model name\s*:\s*(.+)$/m)?.[1] ?? cpu;
  } catch {
    // not Linux: the CPU stays unnamed
  }
  return `${cpu}, ${navigator.hardwareConcurrency} cores, ${Deno.build.os}/${Deno.build.arch}`;
}

if (import.meta.main) {
  console.error(
    `bench:compare — ${workloads.length} workloads × ${contenders.length} contenders × ` +
      `${reps} fresh processes each (progress on stderr, the table on stdout)`,
  );
  const cells = await measureAll();
  const date = new Date().toISOString().slice(0, 10);
  const report = [
    `Measured ${date} on ${await machine()}.`,
    `${await versions()}.`,
    `Medians of ${reps} fresh processes per cell (each process: warm-up runs until five or 0.5 s, ` +
    `then the median of five timed runs, each after a full GC; a run over 1 s is timed once).`,
    "",
    table(cells),
    "",
    "Targets (ratios of the medians above):",
    "",
    ...targets(cells),
  ].join("\n");
  console.log(report);
  if (option("write") !== undefined) {
    const results = new URL("./RESULTS.md", import.meta.url);
    const old = await Deno.readTextFile(results).catch(() => "");
    const head = old.split("<!-- results -->")[0] || "# Benchmark results\n\n";
    await Deno.writeTextFile(
      results,
      `${head}<!-- results -->\n\n${report}\n\nReproduce: \`deno task bench:compare --write\`\n`,
    );
    // Formatted as `deno task check` expects it.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", results.pathname] })
      .output();
    console.error(`wrote ${results.pathname}`);
  }
}
