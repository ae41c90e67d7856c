/**
 * Coroutines: generator objects, and two helpers that type what they yield.
 *
 * @module
 */

/**
 * A coroutine: a generator object driven by a {@linkcode Loop}. What it may
 * `yield` is in the README's yield table; `T` is what it returns.
 *
 * @example
 * ```ts
 * import { type Coro, Loop } from "@tinyio/core";
 *
 * function* one(): Coro<number> {
 *   yield;
 *   return 1;
 * }
 * console.assert(await new Loop().run(one()) === 1);
 * ```
 */
// deno-lint-ignore no-explicit-any
export type Coro<T = unknown> = Generator<unknown, T, any>;

/**
 * Where a loop keeps a coroutine's task: a property of the generator object (a
 * WeakMap costs the same memory and is 4 times slower with a million
 * coroutines alive).
 */
export const TASK: unique symbol = Symbol("tinyio.task");

/** The prototype of every generator object (`%GeneratorPrototype%`). */
export const GeneratorPrototype: object = Object.getPrototypeOf(function* () {}).prototype;
const isPrototypeOf = Object.prototype.isPrototypeOf;

/** True for generator objects, false for everything else. */
export function isGenerator(x: unknown): x is Coro {
  return typeof x === "object" && x !== null && isPrototypeOf.call(GeneratorPrototype, x);
}

/** True for coroutines: generator objects and the library's {@linkcode WaitOn}s. */
export function isCoro(x: unknown): x is Coro {
  return isGenerator(x) || x instanceof WaitOn;
}

// `WaitOn`'s state once its wait has been yielded: the next step returns what it sends in.
const YIELDED: unique symbol = Symbol("yielded");

/**
 * A coroutine of the library that waits on one thing: its first step yields
 * `first.value` (something the loop parks on), and it returns what it is
 * resumed with — or, with no `first`, returns `value` at once. It does what
 * a generator `function* () { return yield wait }` does, in 48 bytes instead
 * of a generator's 150: `event.wait()` and `sleep()` are made by the thousand
 * and stay suspended, so their size is the size of a waiting program. With
 * `yield*` the caller's generator steps it inline; waited on as a coroutine
 * (`yield w`, a gather, `run(w)`) it gets a task of its own, which the loop
 * parks on the wait at once and ends when the wait resumes it.
 *
 * `first` is the step result itself, `{ value: wait, done: false }`, because
 * a generator suspended in `yield*` keeps the last result it got for as long
 * as it waits: a wait that many share (an event's) shares one frozen result.
 *
 * A channel's `send` and `receive` are WaitOns to the loop too, by prototype
 * (see `Receive` in src/channel.ts).
 *
 * @example
 * ```ts ignore
 * // inside the library:
 * sleep = (ms) => new WaitOn({ value: new Sleep(ms), done: false });
 * ```
 */
// deno-lint-ignore no-explicit-any
export class WaitOn<T> extends Iterator<unknown, T, any> implements Generator<unknown, T, any> {
  // Keeps WaitOn's hidden class, and the code compiled against it, alive
  // between runs (docs/design.md, "Hidden classes").
  static #keepShape: WaitOn<unknown> = new WaitOn(null);

  /** Its task, if a loop waits on it as a coroutine (a field: adding the property later costs more). */
  [TASK]: unknown = undefined;
  #first: IteratorYieldResult<unknown> | null;
  #value: T | typeof YIELDED | undefined;

  constructor(first: IteratorYieldResult<unknown> | null, value?: T) {
    super();
    this.#first = first;
    this.#value = value;
  }

  /** First step: yields the wait (or returns the value); second: returns what was sent in. */
  // deno-lint-ignore no-explicit-any
  next(sent?: any): IteratorResult<unknown, T> {
    const first = this.#first;
    if (first !== null) {
      this.#first = null;
      this.#value = YIELDED;
      return first;
    }
    const value = this.#value === YIELDED ? sent : this.#value;
    this.#value = undefined; // ended: later steps return undefined, as a generator's do
    return { value, done: true };
  }

  /** Ends it with `value`, as a generator's `return()` does. */
  override return(value: T): IteratorResult<unknown, T> {
    this.#first = null;
    this.#value = undefined;
    return { value, done: true };
  }

  /** Ends it and throws `error` back, as a generator's `throw()` at a `yield` without `catch` does. */
  override throw(error: unknown): IteratorResult<unknown, T> {
    this.#first = null;
    this.#value = undefined;
    throw error;
  }

  override [Symbol.iterator](): this {
    return this;
  }
}

/**
 * Where a library object that is not a coroutine keeps the hint the loop adds
 * to its error when a coroutine yields it by mistake (`yield event` instead of
 * `yield* event.wait()`): its class's name and the hint, on the prototype of
 * its class. The loop reads it without knowing those classes. The name is
 * given, not read from the class, since bundlers rename classes (`_Channel`).
 */
export const YIELD_HINT: unique symbol = Symbol("tinyio.yieldHint");

/** What {@linkcode YIELD_HINT} holds: the class's public name and the hint. */
export interface YieldHint {
  readonly name: string;
  readonly text: string;
}

/** Gives the instances of `cls`, named `name`, the hint `text` for when a coroutine yields one (see {@linkcode YIELD_HINT}). */
export function hintWhenYielded(
  cls: abstract new (...args: never[]) => object,
  name: string,
  text: string,
): void {
  const hint: YieldHint = { name, text };
  Object.defineProperty(cls.prototype, YIELD_HINT, { value: hint });
}

/**
 * Waits for `coro` and returns its result, typed: `yield* join(c)` is
 * `yield c` with the type of `c`'s result instead of `any`.
 *
 * @example
 * ```ts
 * import { type Coro, join, Loop } from "@tinyio/core";
 *
 * function* child(): Coro<string> {
 *   yield;
 *   return "hi";
 * }
 * function* parent(): Coro<number> {
 *   const s: string = yield* join(child());
 *   return s.length;
 * }
 * console.assert(await new Loop().run(parent()) === 2);
 * ```
 */
export function* join<T>(coro: Coro<T>): Coro<T> {
  return yield coro;
}

/**
 * The tuple of results of a tuple of coroutines: what {@linkcode all} returns.
 *
 * @example
 * ```ts
 * import type { Coro, Results } from "@tinyio/core";
 *
 * type Pair = Results<[Coro<number>, Coro<string>]>; // [number, string]
 * const pair: Pair = [1, "a"];
 * console.assert(pair.length === 2);
 * ```
 */
export type Results<C extends readonly Coro<unknown>[]> = {
  -readonly [K in keyof C]: C[K] extends Coro<infer R> ? R : never;
};

/**
 * Waits for every coroutine of `coros` (a gather) and returns their results
 * in the same order, typed as a tuple: `yield* all([a, b])` is `yield [a, b]`.
 *
 * @example
 * ```ts
 * import { all, type Coro, Loop } from "@tinyio/core";
 *
 * function* num(): Coro<number> {
 *   yield;
 *   return 1;
 * }
 * function* str(): Coro<string> {
 *   return "a";
 * }
 * function* main(): Coro<string> {
 *   const [n, s] = yield* all([num(), str()]);
 *   return s.repeat(n);
 * }
 * console.assert(await new Loop().run(main()) === "a");
 * ```
 */
export function* all<const C extends readonly Coro<unknown>[]>(coros: C): Coro<Results<C>> {
  return yield coros;
}
