/**
 * Permissions of a `ThreadPool`'s workers: Deno's worker permissions, which
 * Deno allows only with `--unstable-worker-options` (or `"unstable":
 * ["worker-options"]` in deno.json) and otherwise ends the whole process at
 * the first worker (exit code 70). No runtime API says whether the flag is
 * on (measured in Deno 2.9: not `Deno.args`, not `process.execArgv`), so the pool reads the command line and the
 * configuration files where it may, and refuses beforehand when it can tell.
 *
 * @module
 */

import { describe } from "../messages.ts";

/**
 * What the workers of a `ThreadPool` may do: Deno's worker permissions, the
 * shape of `Deno.PermissionOptionsObject`. Each kind is `"inherit"` (what the
 * process has), `true` or `false`, or a list of what is allowed (paths, hosts,
 * variable names…); a kind left out is `"inherit"`. A worker's permissions
 * can only narrow the process's. Only Deno has them.
 *
 * @example
 * ```ts
 * import type { ThreadPermissions } from "@tinyio/core";
 *
 * const readDataOnly: ThreadPermissions = { read: ["./data"], net: false, env: false };
 * console.assert(readDataOnly.net === false);
 * ```
 */
export interface ThreadPermissions {
  /** Environment variables, by name. */
  env?: "inherit" | boolean | string[];
  /** Foreign libraries, by path. */
  ffi?: "inherit" | boolean | Array<string | URL>;
  /** Remote modules, by host. */
  import?: "inherit" | boolean | string[];
  /** The network, by host (and port). */
  net?: "inherit" | boolean | string[];
  /** Reading files, by path. */
  read?: "inherit" | boolean | Array<string | URL>;
  /** Running programs, by name or path. */
  run?: "inherit" | boolean | Array<string | URL>;
  /** System information, by kind (`"osRelease"`, `"hostname"`…). */
  sys?: "inherit" | boolean | string[];
  /** Writing files, by path. */
  write?: "inherit" | boolean | Array<string | URL>;
}

/**
 * The worker options that give a pool's workers `permissions`, checked:
 * a `TypeError` for a value that is none; an `Error` off Deno, or where the
 * flag they need is missing.
 */
export function workerOptionsFor(label: string, permissions: unknown): Record<string, unknown> {
  if (permissions === "inherit") return {};
  if (
    permissions !== "none" &&
    (typeof permissions !== "object" || permissions === null || Array.isArray(permissions))
  ) {
    throw new TypeError(
      `${label}: permissions is ${describe(permissions)}; give "inherit", "none" or an ` +
        "object of Deno permissions such as { read: true }.",
    );
  }
  const deno = denoApi();
  if (deno === undefined) {
    throw new Error(
      `${label}: permissions narrow what Deno's workers may do, and this runtime is not Deno: ` +
        "its workers have no such option, and would run with every right of the process. " +
        'Leave the option out (or give "inherit") here, and narrow the process itself if ' +
        "you need to (Node: --permission).",
    );
  }
  if (workerOptionsGiven(deno) === false) {
    throw new Error(
      `${label}: narrowing the permissions of workers needs Deno's --unstable-worker-options ` +
        'flag (or "unstable": ["worker-options"] in deno.json), and this process was started ' +
        "without it: Deno would end the whole process at the first worker. Run " +
        '`deno run --unstable-worker-options …`, or use permissions: "inherit".',
    );
  }
  return { deno: { permissions } };
}

/** A worker could not start with the pool's permissions: say why. Returns `error`. */
export function explainNotCapable(error: unknown, owner: string): unknown {
  const NotCapable = denoApi()?.errors.NotCapable;
  if (NotCapable !== undefined && error instanceof NotCapable) {
    error.message += `: ${owner}'s permissions ask for more than this process ` +
      "was granted; a worker's permissions can only narrow the process's.";
  }
  return error;
}

/** The part of the `Deno` namespace used here, typed here: no type of this package names Deno's. */
interface DenoApi {
  build: { os: string; standalone?: boolean };
  args: string[];
  mainModule: string;
  cwd(): string;
  permissions: { querySync(descriptor: { name: "read"; path: string }): { state: string } };
  readTextFileSync(path: string): string;
  errors: Record<"NotCapable" | "NotFound" | "NotADirectory", new (...args: never[]) => Error>;
}

/** `Deno`, where this runtime is Deno. */
function denoApi(): DenoApi | undefined {
  return (globalThis as { Deno?: DenoApi }).Deno;
}

let workerOptions: boolean | undefined | null = null;

/** True or false if this process can tell whether worker options are enabled; else undefined. */
function workerOptionsGiven(deno: DenoApi): boolean | undefined {
  if (workerOptions === null) workerOptions = detectWorkerOptions(deno);
  return workerOptions;
}

function detectWorkerOptions(deno: DenoApi): boolean | undefined {
  if (deno.build.standalone) return undefined; // flags compiled in: nothing tells
  // The command line, readable only with --allow-all (Deno guards /proc).
  let flags: string[] | undefined;
  const cmdline = deno.build.os === "linux" ? readIfAllowed(deno, "/proc/self/cmdline") : undefined;
  if (typeof cmdline === "string") {
    const argv = cmdline.split("\0");
    if (argv[argv.length - 1] === "") argv.pop();
    flags = argv.slice(0, argv.length - deno.args.length); // not the script's own arguments
    if (flags.includes("--unstable-worker-options")) return true;
    if (flags.includes("--no-config")) return false;
  }
  // The configuration file: `"unstable": ["worker-options"]`.
  const configs: string[] = [];
  try {
    const at = flags?.findIndex((f) => f === "--config" || f === "-c" || f.startsWith("--config="));
    if (flags !== undefined && at !== undefined && at >= 0) {
      const path = flags[at].startsWith("--config=") ? flags[at].slice(9) : flags[at + 1];
      configs.push(path.startsWith("/") ? path : `${deno.cwd()}/${path}`);
    } else {
      // Deno looks upwards from the main module (run) or the working directory (test).
      const dirs = [deno.cwd()];
      if (deno.mainModule.startsWith("file:")) {
        dirs.push(decodeURIComponent(new URL(".", deno.mainModule).pathname));
      }
      for (let dir of dirs) {
        for (;;) {
          dir = dir.replace(/\/+$/, "");
          configs.push(`${dir}/deno.json`, `${dir}/deno.jsonc`);
          if (dir === "") break;
          dir = dir.slice(0, dir.lastIndexOf("/"));
        }
      }
    }
  } catch {
    return undefined; // no permission to read the working directory
  }
  let unreadable = false;
  for (const path of configs) {
    const text = readIfAllowed(deno, path);
    if (text === undefined) unreadable = true;
    else if (text !== null && /"unstable"\s*:\s*\[[^\]]*"worker-options"/.test(text)) return true;
  }
  // Without the command line, the flag may be there unseen.
  return flags === undefined || unreadable ? undefined : false;
}

/** The file's text; null if it does not exist; undefined if it may not be read. */
function readIfAllowed(deno: DenoApi, path: string): string | null | undefined {
  if (deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
  try {
    return deno.readTextFileSync(path);
  } catch (error) {
    return error instanceof deno.errors.NotFound || error instanceof deno.errors.NotADirectory
      ? null
      : undefined;
  }
}
