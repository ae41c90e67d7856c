/**
 * One measurement in a fresh process, started by bench/compare.ts:
 * `deno run --v8-flags=--expose-gc bench/compare/run_one.ts <contender> <workload>`
 * prints one line of JSON, `{ "value": figure or reason }`; for `steps` also
 * the bare-generator floor measured in alternation in the same process,
 * `"floor"`, and the median ratio of the two, `"ratio"`. On Node and Bun the
 * comparison runs a bundle of a contender with {@linkcode measureOne}.
 *
 * @module
 */

import { type Contender, type Workload, WORKLOADS } from "./common.ts";

/** The contenders, each in its own module so a process loads only its own. */
export const CONTENDERS = ["tinyio", "plain", "effection", "effect", "effect3", "floor"] as const;

/** One contender's name. */
export type ContenderName = typeof CONTENDERS[number];

/** Measures `workload` of `contender`: the line of JSON a process prints (value null if it has none). */
export async function measureOne(contender: Contender, workload: Workload): Promise<string> {
  const impl = contender[workload];
  const got = impl === undefined ? null : await impl();
  return JSON.stringify(typeof got === "object" && got !== null ? got : { value: got });
}

if (import.meta.main && "Deno" in globalThis) {
  const [name, workload] = Deno.args as [ContenderName, Workload];
  if (!CONTENDERS.includes(name) || !WORKLOADS.includes(workload)) {
    console.error(`usage: run_one.ts <${CONTENDERS.join("|")}> <${WORKLOADS.join("|")}>`);
    Deno.exit(2);
  }
  const { contender }: { contender: Contender } = await import(`./${name}.ts`);
  console.log(await measureOne(contender, workload));
  Deno.exit(0); // do not wait for a worker a contender left running
}
