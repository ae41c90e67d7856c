/**
 * `node:process` for runtimes without Node's modules: the global `process`
 * where there is one, else nothing (tests that need it say so: `cpuUsage`
 * in tests/_helper.ts).
 *
 * @module
 */
const process: unknown = (globalThis as { process?: unknown }).process;
export default process;
