/**
 * What runs on a worker: a self-contained function, sent by its source text,
 * or a module export named by `threadFunction`; and the {@linkcode Target} a
 * call carries to a worker for either.
 *
 * @module
 */

import { describe } from "../messages.ts";

/**
 * What runs on a worker: a self-contained function, or a module export named
 * by {@linkcode threadFunction}; `A` are its arguments, `R` its result.
 *
 * @example
 * ```ts
 * import { type Coro, Loop, runInThread, type ThreadFn } from "@tinyio/core";
 *
 * function* twice<R>(fn: ThreadFn<[], R>): Coro<R[]> {
 *   return yield [runInThread(fn), runInThread(fn)];
 * }
 * const [a, b] = await new Loop().run(twice(() => 7));
 * console.assert(a + b === 14);
 * ```
 */
export type ThreadFn<A extends unknown[], R> =
  | ((...args: A) => R | PromiseLike<R>)
  | ThreadFunction<(...args: A) => R | PromiseLike<R>>;

/**
 * An export of a module, to run on a worker: made by {@linkcode threadFunction}.
 *
 * @example
 * ```ts
 * import { threadFunction, type ThreadFunction } from "@tinyio/core";
 *
 * const f: ThreadFunction<(x: number) => number> = threadFunction(
 *   "file:///app/tasks.ts",
 *   "square",
 * );
 * console.assert(f.exportName === "square");
 * ```
 */
// deno-lint-ignore no-explicit-any
export interface ThreadFunction<F extends (...args: any[]) => any> {
  /** The module's absolute URL. */
  readonly module: string;
  /** The name of the exported function. */
  readonly exportName: string;
  /** Type only, never set: the exported function's type, from which calls are typed. */
  readonly signature?: F;
}

/**
 * Names the export `exportName` of the module at `module` (an absolute URL:
 * `new URL("./tasks.ts", import.meta.url)` or `import.meta.resolve(...)`), to
 * run on a worker with {@linkcode runInThread} or a {@linkcode ThreadPool}. The
 * module is imported on the worker, so it may import anything, and reading it
 * takes `--allow-read` for its files. A relative string is a `TypeError`; a
 * missing export is a `TypeError` thrown into the calling coroutine.
 *
 * @example
 * ```ts
 * import { type Coro, runInThread, threadFunction } from "@tinyio/core";
 *
 * // tasks.ts, next to this module: export function hash(text: string): number { … }
 * const hash = threadFunction<(text: string) => number>(
 *   new URL("./tasks.ts", import.meta.url),
 *   "hash",
 * );
 * function* main(): Coro<number> {
 *   return yield* runInThread(hash, "some text"); // typed: (text: string) => number
 * }
 * ```
 */
// deno-lint-ignore no-explicit-any
export function threadFunction<F extends (...args: any[]) => any>(
  module: string | URL,
  exportName: string,
): ThreadFunction<F> {
  const label = `threadFunction(${describe(module)}, ${describe(exportName)})`;
  if (!(module instanceof URL) && typeof module !== "string") {
    throw new TypeError(`${label}: the module is a URL or a string, not ${describe(module)}.`);
  }
  if (!URL.canParse(module)) {
    throw new TypeError(
      `${label}: the module must be an absolute URL, since the worker cannot know what it is ` +
        'relative to: use new URL("./tasks.ts", import.meta.url) or import.meta.resolve("./tasks.ts").',
    );
  }
  if (typeof exportName !== "string" || exportName === "") {
    throw new TypeError(`${label}: the export name is a non-empty string.`);
  }
  return Object.freeze({ module: new URL(module).href, exportName });
}

/**
 * What a call runs, as the worker is told it: a function's source text, or a
 * module and export; `key` tells functions apart among a worker's definitions.
 */
export type Target =
  | { readonly key: string; readonly source: string }
  | { readonly key: string; readonly module: string; readonly exportName: string };

const GeneratorFunction = Object.getPrototypeOf(function* () {}).constructor;
const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;

/** The target of a thread call of `fn` (a `ThreadFn`); a `TypeError` labelled `label` if it is none. */
export function targetOf(label: string, fn: unknown): Target {
  if (typeof fn === "function") {
    if (fn instanceof GeneratorFunction || fn instanceof AsyncGeneratorFunction) {
      throw new TypeError(
        `${label}: ${describe(fn)} is a generator function; a thread runs a plain or async ` +
          "function. To wait for a coroutine, yield it instead.",
      );
    }
    const source = Function.prototype.toString.call(fn);
    if (/\{\s*\[native code\]\s*\}$/.test(source)) {
      throw new TypeError(
        `${label}: ${describe(fn)} is a built-in or bound function, which has no source text ` +
          "to send to a worker. Wrap it in an arrow function (`(x) => Math.sqrt(x)`), or " +
          "export a function from a module and use threadFunction.",
      );
    }
    return { key: source, source };
  }
  if (isThreadFunction(fn)) {
    // No function's text starts with a NUL: the keys of the two kinds differ.
    const { module, exportName } = fn;
    return { key: `\0${module}\0${exportName}`, module, exportName };
  }
  throw new TypeError(
    `${label}: the function is ${describe(fn)}; give a self-contained function (sent by its ` +
      'source text) or threadFunction(new URL("./tasks.ts", import.meta.url), "name").',
  );
}

function isThreadFunction(x: unknown): x is ThreadFunction<() => unknown> {
  if (typeof x !== "object" || x === null) return false;
  const { module, exportName } = x as Partial<ThreadFunction<() => unknown>>;
  return typeof module === "string" && URL.canParse(module) && typeof exportName === "string";
}
