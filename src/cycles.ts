/**
 * The cycle check: tasks that wait on each other in a ring, which nothing
 * can ever wake. The driver looks for one only when nothing at all can wake
 * the loop (no task runnable, no hold, no deadline), so it costs nothing
 * while coroutines run. `waitsOn`, the edges it follows, are also what a
 * shield protects and what a stop cancels (src/cancelling.ts).
 *
 * @module
 */

// The task states are imported, not copied as in core.ts: nothing here is on
// the hot path (docs/design.md, "The hot path").
import {
  DONE,
  type Gather,
  PARKED,
  type Run,
  Task,
  type Wait,
  WAITING,
  WAITON_PARKED,
} from "./task.ts";

/**
 * Returns a waiting cycle among `run`'s tasks (each waits on the next, the
 * last on the first), or null. It follows every wait on coroutines: a single
 * one, a gather, and the waits that wait on coroutines for their task (a
 * timeout's, a shield's), so a cycle through a shield is a cycle too.
 */
export function findCycle(run: Run): Task[] | null {
  const depth = new Map<Task, number>(); // on the current path: its depth; done: -1
  for (let t = run.first; t !== null; t = t.next) {
    if (depth.has(t)) continue;
    const start = waitsOn(t);
    if (start.length === 0) continue;
    // Iterative depth-first search, so that a deep chain cannot overflow the stack.
    const path: Task[] = [t];
    const todo: Task[][] = [start];
    depth.set(t, 0);
    while (path.length > 0) {
      const children = todo[todo.length - 1];
      const child = children.pop();
      if (child === undefined) {
        depth.set(path.pop()!, -1);
        todo.pop();
        continue;
      }
      const d = depth.get(child);
      if (d === undefined) {
        depth.set(child, path.length);
        path.push(child);
        todo.push(waitsOn(child));
      } else if (d >= 0) return path.slice(d);
    }
  }
  return null;
}

/**
 * The unfinished tasks that `t` waits on now: its child, its gather's open
 * children, or those of the Wait it is parked on (a timeout's coroutine, a
 * shield's, the coroutines a stop waits for). A fresh array.
 */
export function waitsOn(t: Task): Task[] {
  const on = t.waitingOn;
  if (t.state === WAITING) {
    if (on instanceof Task) return [on];
    return (on as Gather).slots.filter((x): x is Task => x instanceof Task && x.state < DONE);
  }
  if (t.state === PARKED || t.state === WAITON_PARKED) {
    return (on as Wait).children().filter((x) => x.state < DONE);
  }
  return [];
}
