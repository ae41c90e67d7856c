/**
 * Snapshots: every unfinished coroutine of a loop, what it waits for and who
 * waits for it (`loop.snapshot()`), and the tree `formatSnapshot` prints.
 * Nothing is recorded for them while coroutines run: a snapshot reads the
 * loop's own records (the runs' task lists, each task's state, what it waits
 * on, its waiters) when it is asked for, and names and locations come from
 * the inspector (src/inspect.ts).
 *
 * @module
 */

import { CancelledError } from "./errors.ts";
import { isGenerator } from "./coro.ts";
import type { Core } from "./core.ts";
import { shieldedAmong } from "./cancelling.ts";
import { inspectorAllowed, type Position, readPositions } from "./inspect.ts";
import {
  DONE,
  FAILING,
  Gather,
  type Observer,
  PARKED,
  RUNNING,
  Task,
  THROWING,
  Wait,
  WAITING,
  WAITON_PARKED,
} from "./task.ts";

/**
 * One unfinished coroutine in a {@linkcode Loop.prototype.snapshot}.
 *
 * @example
 * ```ts
 * import { type CoroutineInfo, Event, Loop } from "@tinyio/core";
 *
 * const loop = new Loop();
 * const ready = new Event();
 * const running = loop.run(ready.wait());
 * const [info]: CoroutineInfo[] = await loop.snapshot();
 * console.assert(info.state === "waiting" && info.waitingFor === "Event");
 * ready.set();
 * await running;
 * ```
 */
export interface CoroutineInfo {
  /**
   * Unique in its loop: handed out by the first snapshot (or cycle error)
   * that lists the coroutine, in the order the coroutines were started (those
   * of the loop's run first, then those of each `isolate` loop within it, in
   * the order those started), and kept by every later snapshot of the loop.
   */
  id: number;
  /** The generator function's name, when the inspector can tell. */
  name?: string;
  /**
   * Where it is suspended, `file:///…/x.ts:12:5` (line and column from 1),
   * in the source as written; absent when the inspector cannot tell for sure.
   * A coroutine that has not started yet is "suspended" at its function's start.
   */
  location?: string;
  /**
   * `queued`: runnable, waiting for its turn; `running`: being stepped (the
   * coroutine that took the snapshot); `waiting`: see `waitingFor`;
   * `cancelling`: its run is failing (or it is being cancelled) and its
   * `CancelledError` is on its way or being handled.
   */
  state: "queued" | "running" | "waiting" | "cancelling";
  /**
   * What it waits for: "coroutine 4", "coroutines 4, 7" (a gather's
   * unfinished ones), "sleep (40 ms left)", "Event", "Semaphore(2)",
   * "Barrier(3): 1 arrived", "thread", "promise", "isolated loop (coroutine
   * 12)"; "" when it waits for nothing (queued or running).
   */
  waitingFor: string;
  /** The ids of the coroutines waiting on it, in the order they began to. */
  waitedOnBy: number[];
  /**
   * The id of the coroutine that started it by waiting on it (`yield c`, a
   * gather, `timeout`), while that one is unfinished; for the coroutine of an
   * `isolate`, the coroutine of the outer loop waiting on it. Absent for a
   * coroutine started in the background or by `run`.
   */
  startedBy?: number;
  /** True inside a `shield`: a cancellation does not reach it. */
  shielded: boolean;
}

/** The ids a loop hands out: per loop (its core), weakly, as the tasks themselves are held. */
const numberings = new WeakMap<Core, { next: number; ids: WeakMap<Task, number> }>();

/** The loop a core belongs to: itself, or for a nested loop (`isolate`) the loop around it. */
function loopOf(core: Core): Core {
  while (core.host !== null) core = core.host.run.core;
  return core;
}

/**
 * The unfinished tasks of the loop of `core` (its runs and the nested runs
 * within them, all stepped by its driver), numbered: ids for the newcomers.
 */
export function numbered(core: Core): { tasks: Task[]; idOf: (task: Task) => number | undefined } {
  const loop = loopOf(core);
  let numbering = numberings.get(loop);
  if (numbering === undefined) numberings.set(loop, numbering = { next: 1, ids: new WeakMap() });
  const { ids } = numbering;
  const tasks: Task[] = [];
  for (const run of loop.driver.runs) {
    for (let t = run.first; t !== null; t = t.next) {
      if (!ids.has(t)) ids.set(t, numbering.next++);
      tasks.push(t);
    }
  }
  tasks.sort((a, b) => ids.get(a)! - ids.get(b)!);
  const mine = new Set(loop.driver.runs);
  return { tasks, idOf: (t) => mine.has(t.run) ? ids.get(t) : undefined };
}

/**
 * Every unfinished coroutine of the loop of `core`. With the inspector, the
 * driver steps nothing while their positions are read, so that names,
 * locations and states agree.
 */
export function snapshot(core: Core): Promise<CoroutineInfo[]> {
  const { tasks, idOf } = numbered(core);
  const shielded = shieldedAmong(tasks);
  const infos = tasks.map((t) => infoOf(t, idOf, shielded));
  const generators = tasks.filter((t) => isGenerator(t.gen));
  if (generators.length === 0 || !inspectorAllowed()) return Promise.resolve(infos);
  const reading = readPositions(generators.map((t) => t.gen));
  core.driver.pauseWhile(reading);
  return reading.then((positions) => {
    const at = new Map<Task, Position>(generators.map((t, i) => [t, positions[i]]));
    return tasks.map((t, i) => withPosition(infos[i], at.get(t)));
  });
}

/** `info` with the name and location of `position`, in the field order of CoroutineInfo. */
function withPosition(info: CoroutineInfo, position: Position | undefined): CoroutineInfo {
  const { name, location } = position ?? {};
  if (name === undefined && location === undefined) return info;
  const { id, ...rest } = info;
  return {
    id,
    ...(name === undefined ? {} : { name }),
    ...(location === undefined ? {} : { location }),
    ...rest,
  };
}

function infoOf(
  task: Task,
  idOf: (task: Task) => number | undefined,
  shielded: Set<Task>,
): CoroutineInfo {
  const info: CoroutineInfo = {
    id: idOf(task)!,
    state: stateOf(task, shielded),
    waitingFor: waitingFor(task, idOf),
    waitedOnBy: waitersOf(task, idOf),
    shielded: shielded.has(task),
  };
  // Started by waiting on it; an isolated loop's coroutine, by the outer coroutine parked on it.
  const starter = task.starter ?? (task.run.root === task ? task.run.core.host : null);
  const startedBy = starter === null ? undefined : idOf(starter);
  if (startedBy !== undefined && starter!.state < DONE) info.startedBy = startedBy;
  return info;
}

function stateOf(task: Task, shielded: Set<Task>): CoroutineInfo["state"] {
  // A task of a failing run that is not shielded has its CancelledError
  // coming, or is handling it; so has one queued to have a CancelledError
  // thrown in (one waiting on an isolate whose loop was cancelled).
  if (task.run.crashed && !shielded.has(task)) return "cancelling";
  // Cleaning up after its cancellation (a crash's or a stop's), in a shield or between two.
  if (task.run.cancelling?.has(task)) return "cancelling";
  if (task.state === THROWING && task.value instanceof CancelledError) return "cancelling";
  if (task.state <= FAILING) return "queued";
  if (task.state === RUNNING) return "running";
  return "waiting";
}

/** What `task` waits for, as a snapshot says it (see CoroutineInfo.waitingFor). */
export function waitingFor(task: Task, idOf: (task: Task) => number | undefined): string {
  const on = task.waitingOn;
  if (task.state === WAITING) {
    const children = on instanceof Task
      ? [on]
      : on instanceof Gather
      ? on.slots.filter((x): x is Task => x instanceof Task)
      : [];
    return coroutines(children.map((c) => idOf(c)!));
  }
  if ((task.state === PARKED || task.state === WAITON_PARKED) && on instanceof Wait) {
    try {
      return on.waitingFor(task, idOf);
    } catch {
      return on.constructor.name;
    }
  }
  return "";
}

/** "coroutine 4", "coroutines 4, 7" (repeats once), at most 10 ids and how many more. */
function coroutines(ids: number[]): string {
  const unique = [...new Set(ids)];
  if (unique.length === 1) return `coroutine ${unique[0]}`;
  const shown = unique.slice(0, 10).join(", ");
  const more = unique.length - 10;
  return more > 0 ? `coroutines ${shown} and ${more} more` : `coroutines ${shown}`;
}

function waitersOf(task: Task, idOf: (task: Task) => number | undefined): number[] {
  const ids: number[] = [];
  const add = (w: Task | Observer | number) => {
    // An observer counts if a task waits through it (a timeout's caller).
    const t = w instanceof Task ? w : typeof w === "function" ? w.owner : null;
    const id = t == null ? undefined : idOf(t);
    if (id !== undefined && !ids.includes(id)) ids.push(id);
  };
  if (task.waiter !== null) add(task.waiter);
  const more = task.moreWaiters;
  if (more !== null) { for (let i = 0; i < more.length; i += 2) add(more[i]); }
  // The coroutine of an isolated loop is waited on by the outer coroutine parked on it.
  const host = task.run.core.host;
  if (host !== null && task.run.root === task) add(host);
  return ids;
}

// ---------------------------------------------------------------------------
// The tree.

const MAX_INDENT = 24; // deeper lines are not indented further: they say their depth

/**
 * Formats a snapshot as an indented tree, one line per coroutine: each under
 * the coroutine that started it, or else under one that waits on it; the
 * others at the top, in id order.
 *
 * @example
 * ```ts
 * import { type Coro, Event, formatSnapshot, Loop } from "@tinyio/core";
 *
 * const ready = new Event();
 * function* worker(): Coro<void> {
 *   yield* ready.wait();
 * }
 * function* main(): Coro<void> {
 *   yield [worker(), worker()];
 * }
 * const loop = new Loop();
 * const running = loop.run(main());
 * setTimeout(async () => {
 *   console.log(formatSnapshot(await loop.snapshot()));
 *   // #1 main: waiting for coroutines 2, 3 (at file:///…/x.ts:7:3)
 *   // ├─ #2 worker: waiting for Event (at file:///…/x.ts:4:3)
 *   // └─ #3 worker: waiting for Event (at file:///…/x.ts:4:3)
 *   ready.set();
 * }, 10);
 * await running;
 * ```
 */
export function formatSnapshot(infos: readonly CoroutineInfo[]): string {
  if (infos.length === 0) return "(no unfinished coroutines)";
  const byId = new Map(infos.map((info) => [info.id, info]));
  const parent = new Map<number, number>();
  // Started-by links first: they never form a cycle (a starter is older).
  for (const info of infos) {
    if (info.startedBy !== undefined && byId.has(info.startedBy)) {
      parent.set(info.id, info.startedBy);
    }
  }
  // Then a coroutine with no starter goes under a waiter, unless that waiter is below it.
  const isBelow = (id: number, top: number) => {
    for (let p: number | undefined = id; p !== undefined; p = parent.get(p)) {
      if (p === top) return true;
    }
    return false;
  };
  // (Latest first, so that in a circle of waiters the oldest is the one on top.)
  for (const info of [...infos].sort((a, b) => b.id - a.id)) {
    if (parent.has(info.id)) continue;
    const waiter = info.waitedOnBy.find((w) => byId.has(w) && !isBelow(w, info.id));
    if (waiter !== undefined) parent.set(info.id, waiter);
  }
  const children = new Map<number | undefined, CoroutineInfo[]>();
  for (const info of [...infos].sort((a, b) => a.id - b.id)) {
    const p = parent.get(info.id);
    const siblings = children.get(p);
    if (siblings === undefined) children.set(p, [info]);
    else siblings.push(info);
  }
  const lines: string[] = [];
  // Depth first, without recursion: a chain may be thousands deep.
  const todo: { info: CoroutineInfo; prefix: string; last: boolean; depth: number }[] = (
    children.get(undefined) ?? []
  ).map((info) => ({ info, prefix: "", last: true, depth: 0 })).reverse();
  while (todo.length > 0) {
    const { info, prefix, last, depth } = todo.pop()!;
    const indented = depth > MAX_INDENT;
    const branch = depth === 0 ? "" : last ? "└─ " : "├─ ";
    lines.push(`${prefix}${branch}${indented ? `[depth ${depth}] ` : ""}${lineOf(info, parent)}`);
    const below = children.get(info.id) ?? [];
    const next = depth === 0 || indented ? prefix : prefix + (last ? "   " : "│  ");
    for (let i = below.length - 1; i >= 0; i--) {
      todo.push({ info: below[i], prefix: next, last: i === below.length - 1, depth: depth + 1 });
    }
  }
  return lines.join("\n");
}

function lineOf(info: CoroutineInfo, parent: Map<number, number>): string {
  let line = `#${info.id}${info.name === undefined ? "" : ` ${info.name}`}: `;
  if (info.state === "waiting") line += `waiting for ${info.waitingFor}`;
  else if (info.state === "cancelling" && info.waitingFor !== "") {
    line += `cancelling, waiting for ${info.waitingFor}`;
  } else line += info.state;
  if (info.shielded) line += " [shielded]";
  const others = info.waitedOnBy.filter((w) => w !== parent.get(info.id));
  if (others.length > 0) line += `, also waited on by ${others.map((w) => `#${w}`).join(", ")}`;
  if (info.location !== undefined) line += ` (at ${info.location})`;
  return line;
}
