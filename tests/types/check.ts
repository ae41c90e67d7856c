/**
 * The published types without Deno (`deno task check:types`): what a
 * TypeScript user on Node compiles against. It emits the package's
 * declarations with npm's `typescript` (`tsc --emitDeclarationOnly` over
 * mod.ts: per file, from the explicit types that JSR's "no slow types" rule
 * guarantees, as JSR does for its npm tarballs), installs them as
 * node_modules/@tinyio/core of a fresh project with `@types/node`, and
 * compiles tests/types/consumer.ts there with `strict` and
 * `skipLibCheck: false`. Any error fails it.
 *
 * The project's settings are @tsconfig/node22's (target es2022, lib es2024,
 * module nodenext) plus lib `esnext.iterator`: the library's waits extend
 * the ES2025 global `Iterator` (Node 22 has it; TypeScript puts its type in
 * that lib).
 *
 * Tools: typescript and @types/node from the npm registry, with npm, into
 * `$TINYIO_CACHE/types` (default ~/.cache/tinyio-ci); tsc runs on
 * `$TINYIO_NODE` (default `node`).
 *
 * @module
 */

const TYPESCRIPT = "typescript@5.9.3";
const TYPES_NODE = "@types/node@22.20.7";

const ROOT = new URL("../../", import.meta.url).pathname;
const cache = `${
  Deno.env.get("TINYIO_CACHE") ??
    `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/tinyio-ci`
}/types`;
const node = Deno.env.get("TINYIO_NODE") ?? "node";

async function sh(
  command: string,
  args: string[],
  cwd?: string,
): Promise<{ ok: boolean; out: string }> {
  const { success, stdout, stderr } = await new Deno.Command(command, { args, cwd }).output();
  const text = new TextDecoder();
  return { ok: success, out: (text.decode(stdout) + text.decode(stderr)).trim() };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

const tsc = `${cache}/node_modules/typescript/bin/tsc`;
const version = TYPESCRIPT.split("@")[1];
const installed = await Deno.readTextFile(`${cache}/node_modules/typescript/package.json`)
  .then((t) => JSON.parse(t).version === version, () => false);
if (!installed || !(await exists(`${cache}/node_modules/@types/node`))) {
  console.log(`installing ${TYPESCRIPT} and ${TYPES_NODE} into ${cache}`);
  await Deno.mkdir(cache, { recursive: true });
  const npm = await sh("npm", [
    "install",
    "--prefix",
    cache,
    "--no-save",
    "--no-audit",
    "--no-fund",
    TYPESCRIPT,
    TYPES_NODE,
  ]);
  if (!npm.ok) throw new Error(`npm install failed:\n${npm.out}`);
}

const dir = await Deno.makeTempDir({ prefix: "tinyio-types-" });
let failed = false;
try {
  // 1. The declarations, as a package.
  const pkg = `${dir}/node_modules/@tinyio/core`;
  const emit = {
    compilerOptions: {
      target: "es2022",
      lib: ["esnext", "dom"],
      module: "esnext",
      moduleResolution: "bundler",
      allowImportingTsExtensions: true,
      declaration: true,
      emitDeclarationOnly: true,
      // Declarations only, from the written types: the source is type-checked
      // by `deno check`, against Deno's own types, which tsc does not have.
      noCheck: true,
      types: [],
      rootDir: ROOT,
      outDir: pkg,
    },
    files: [`${ROOT}mod.ts`],
  };
  await Deno.writeTextFile(`${dir}/emit.json`, JSON.stringify(emit));
  const emitted = await sh(node, [tsc, "-p", `${dir}/emit.json`]);
  if (!emitted.ok) throw new Error(`declaration emit failed:\n${emitted.out}`);
  const { name, version } = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  await Deno.writeTextFile(
    `${pkg}/package.json`,
    JSON.stringify({
      name,
      version,
      type: "module",
      exports: { ".": { types: "./mod.d.ts", default: "./mod.js" } },
    }),
  );

  // 2. A strict project on Node that uses them.
  await Deno.copyFile(`${ROOT}tests/types/consumer.ts`, `${dir}/consumer.ts`);
  await Deno.writeTextFile(`${dir}/package.json`, JSON.stringify({ type: "module" }));
  const project = {
    compilerOptions: {
      target: "es2022",
      lib: ["es2024", "esnext.iterator"],
      module: "nodenext",
      moduleResolution: "nodenext",
      strict: true,
      skipLibCheck: false,
      noEmit: true,
      types: ["node"],
      typeRoots: [`${cache}/node_modules/@types`],
    },
    files: ["consumer.ts"],
  };
  await Deno.writeTextFile(`${dir}/tsconfig.json`, JSON.stringify(project));
  const compiled = await sh(node, [tsc, "-p", "tsconfig.json"], dir);
  if (compiled.ok) {
    console.log(
      `types: a strict Node project (${TYPESCRIPT}, ${TYPES_NODE}, skipLibCheck: false) ` +
        `compiles against the package's declarations`,
    );
  } else {
    failed = true;
    console.log(
      `types: a strict Node project does not compile:\n${compiled.out}`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
if (failed) Deno.exit(1);
