/**
 * Permissions of a `ThreadPool`'s workers: Deno's worker permissions, which
 * Deno allows only with `--unstable-worker-options` (or `"unstable":
 * ["worker-options"]` in deno.json) and otherwise ends the whole process at
 * the first worker (exit code 70). No runtime API says whether the flag is
 * on (see PLATFORM-NOTES), so the pool reads the command line and the
 * configuration files where it may, and refuses beforehand when it can tell.
 *
 * @module
 */

import { describe } from "../loop.ts";

/**
 * The worker options that give a pool's workers `permissions`, checked:
 * a `TypeError` for a value that is none, an `Error` where the flag they
 * need is missing.
 */
export function workerOptionsFor(
  label: string,
  permissions: unknown,
): Record<string, unknown> {
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
  if (workerOptionsGiven() === false) {
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
  if (error instanceof Deno.errors.NotCapable) {
    error.message += `: ${owner}'s permissions ask for more than this process ` +
      "was granted; a worker's permissions can only narrow the process's.";
  }
  return error;
}

let workerOptions: boolean | undefined | null = null;

/** True or false if this process can tell whether worker options are enabled; else undefined. */
function workerOptionsGiven(): boolean | undefined {
  if (workerOptions === null) workerOptions = detectWorkerOptions();
  return workerOptions;
}

function detectWorkerOptions(): boolean | undefined {
  if (Deno.build.standalone) return undefined; // flags compiled in: nothing tells
  // The command line, readable only with --allow-all (Deno guards /proc).
  let flags: string[] | undefined;
  const cmdline = Deno.build.os === "linux" ? readIfAllowed("/proc/self/cmdline") : undefined;
  if (typeof cmdline === "string") {
    const argv = cmdline.split("\0");
    if (argv[argv.length - 1] === "") argv.pop();
    flags = argv.slice(0, argv.length - Deno.args.length); // not the script's own arguments
    if (flags.includes("--unstable-worker-options")) return true;
    if (flags.includes("--no-config")) return false;
  }
  // The configuration file: `"unstable": ["worker-options"]`.
  const configs: string[] = [];
  try {
    const at = flags?.findIndex((f) => f === "--config" || f === "-c" || f.startsWith("--config="));
    if (flags !== undefined && at !== undefined && at >= 0) {
      const path = flags[at].startsWith("--config=") ? flags[at].slice(9) : flags[at + 1];
      configs.push(path.startsWith("/") ? path : `${Deno.cwd()}/${path}`);
    } else {
      // Deno looks upwards from the main module (run) or the working directory (test).
      const dirs = [Deno.cwd()];
      if (Deno.mainModule.startsWith("file:")) {
        dirs.push(decodeURIComponent(new URL(".", Deno.mainModule).pathname));
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
    const text = readIfAllowed(path);
    if (text === undefined) unreadable = true;
    else if (text !== null && /"unstable"\s*:\s*\[[^\]]*"worker-options"/.test(text)) return true;
  }
  // Without the command line, the flag may be there unseen.
  return flags === undefined || unreadable ? undefined : false;
}

/** The file's text; null if it does not exist; undefined if it may not be read. */
function readIfAllowed(path: string): string | null | undefined {
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory
      ? null
      : undefined;
  }
}
