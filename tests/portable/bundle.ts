/**
 * What the portable test run (tests/portable/run.ts) and the comparison on
 * other runtimes (bench/compare.ts `--runtimes=`) share: bundling a module
 * for runtimes other than Deno, and the Node and Bun binaries.
 *
 * @module
 */

const ROOT = new URL("../../", import.meta.url);

/**
 * A bundle's flavour. "node": `node:` modules are left to the runtime (Node,
 * Bun, workerd with `nodejs_compat`). "web": `node:assert/strict` (npm's
 * `assert`, a port of Node's) and `node:process` (the global, if any) are
 * bundled in (browsers, older workerd).
 */
export type Flavor = "node" | "web";

/** A Node-like binary that runs a bundle in a fresh process. */
export interface ProcessBinary {
  /** The command (from `TINYIO_NODE` / `TINYIO_BUN`, else `node` / `bun`). */
  command: string;
  /** Flags before the script. */
  flags: string[];
  /** A module to import before anything else (gives Bun a `gc()`). */
  prelude: string;
  /** Why this binary will not do, from its `--version`; null if it will. */
  problem(version: string): string | null;
}

/** Node 22+, with `gc()` (the benchmarks and the tests of weak results need it). */
export const NODE: ProcessBinary = {
  command: Deno.env.get("TINYIO_NODE") ?? "node",
  flags: ["--expose-gc"],
  prelude: "",
  problem: (version) =>
    Number(version.match(/^v(\d+)/)?.[1]) >= 22
      ? null
      : "Node 22 or later is needed: set TINYIO_NODE to its binary",
};

/** Bun, with `gc()` from `Bun.gc(true)` (a full, synchronous collection). */
export const BUN: ProcessBinary = {
  command: Deno.env.get("TINYIO_BUN") ?? "bun",
  flags: [],
  prelude: "globalThis.gc ??= () => Bun.gc(true);\n",
  problem: () => null,
};

/** Runs `binary --version`; throws with the fix if it is missing or unfit. */
export async function checkBinary(name: string, binary: ProcessBinary): Promise<string> {
  const { stdout } = await new Deno.Command(binary.command, {
    args: ["--version"],
    stdout: "piped",
  })
    .output()
    .catch((e) => {
      throw new Error(`${name}: cannot start ${binary.command} (${e.message})`);
    });
  const version = new TextDecoder().decode(stdout).trim();
  const problem = binary.problem(version);
  if (problem) throw new Error(`${name}: ${binary.command} is ${version}: ${problem}`);
  return version;
}

/**
 * Bundles each of `entries` (module paths) with `deno bundle` into
 * `outdir/<name>.js`, one self-contained ES module each, for `flavor`.
 */
export async function bundle(entries: string[], outdir: string, flavor: Flavor): Promise<void> {
  const config = new URL("deno.json", ROOT).pathname;
  const args = ["bundle", "--quiet", "--platform=browser", "--config", config];
  if (flavor === "web") {
    // An import map replaces deno.json's imports: theirs, and the two `node:` modules.
    const imports = JSON.parse(await Deno.readTextFile(config)).imports;
    const map = {
      imports: {
        ...imports,
        "node:assert/strict": new URL("tests/portable/web_assert.ts", ROOT).href,
        "node:process": new URL("tests/portable/web_process.ts", ROOT).href,
      },
    };
    const mapFile = `${outdir}.imports.json`;
    await Deno.writeTextFile(mapFile, JSON.stringify(map));
    args.push("--import-map", mapFile);
  }
  const { success, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [...args, "--outdir", outdir, ...entries],
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`deno bundle failed:\n${new TextDecoder().decode(stderr)}`);
  const esbuild = await import("esbuild");
  try {
    for (const entry of entries) {
      const path = `${outdir}/${entry.split("/").pop()!.replace(/\.ts$/, ".js")}`;
      const { code } = await esbuild.transform(await Deno.readTextFile(path), TRANSFORM[flavor]);
      await Deno.writeTextFile(path, code);
    }
  } finally {
    await esbuild.stop();
  }
}

/** What esbuild changes in each flavour's bundles, after `deno bundle`. */
const TRANSFORM: Record<Flavor, import("esbuild").TransformOptions> = {
  // Node 22's V8 has no `using` declarations (Node 24's has) and some tests
  // and benchmarks use them: rewritten for target node22, with
  // `Symbol.dispose`, which Node 22 has. The library itself uses no `using`:
  // src/ runs as written.
  node: { target: "node22", format: "esm" },
  // npm's `assert` (and its `util`) read a browserify `process` in four
  // places; those reads become `undefined` rather than a global `process`
  // that the library could mistake for Node's.
  web: {
    format: "esm",
    define: {
      "process.env.NODE_DEBUG": "undefined",
      "process.stderr": "undefined",
      "process.emitWarning": "undefined",
    },
  },
};
