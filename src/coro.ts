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

const GeneratorPrototype: object = Object.getPrototypeOf(function* () {}).prototype;
const isPrototypeOf = Object.prototype.isPrototypeOf;

/** True for generator objects (the coroutines), false for everything else. */
export function isGenerator(x: unknown): x is Coro {
  return typeof x === "object" && x !== null && isPrototypeOf.call(GeneratorPrototype, x);
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
