/**
 * The documentation cannot rot: every exported symbol is documented with an
 * example, every example and README code block type-checks against this
 * package and runs without a failed assertion, `deno doc --lint` is clean,
 * and `deno publish --dry-run` publishes only the library.
 *
 * The checks run the real tools (`deno check --doc`, `deno test --doc`,
 * `deno doc`, `deno publish --dry-run`) in a subprocess, on the repository.
 * `deno check` runs with `--reload`: with its cache warm it checks nothing
 * and names nothing, and the tests count what it checked.
 * README blocks import `jsr:@tinyio/core` or `@tinyio/core`: deno.json names
 * the package `@tinyio/core`, so both resolve to this very package here.
 */
import assert from "node:assert/strict";
import { test } from "./_helper.ts";

const root = new URL("..", import.meta.url);
const rootPath = root.pathname;

/** Runs the `deno` that runs this test, in the repository, without colours. */
async function deno(...args: string[]): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, output: text.decode(stdout) + text.decode(stderr) };
}

/** The library's source files: what `deno check --doc` and `deno test --doc` read. */
function sourceFiles(): string[] {
  const files = ["mod.ts"];
  for (const dir of ["src/", ...subfolders("src/")]) {
    for (const entry of Deno.readDirSync(new URL(dir, root))) {
      if (entry.isFile && entry.name.endsWith(".ts")) files.push(`${dir}${entry.name}`);
    }
  }
  return files.sort();
}

/** The folders directly inside `dir` (src/thread/ …), as paths ending in "/". */
function subfolders(dir: string): string[] {
  return [...Deno.readDirSync(new URL(dir, root))]
    .filter((entry) => entry.isDirectory)
    .map((entry) => `${dir}${entry.name}/`);
}

/** How many README code blocks Deno type-checks (TypeScript or JavaScript, not `ignore`). */
function readmeCodeBlocks(): number {
  const readme = Deno.readTextFileSync(new URL("README.md", root));
  const fences = readme.match(/^```(ts|tsx|js|jsx|typescript|javascript)\b[^\n]*$/gm) ?? [];
  return fences.filter((fence) => !/\bignore\b/.test(fence)).length;
}

interface DocTag {
  kind: string;
  doc?: string;
}
interface DocSymbol {
  name: string;
  declarations: { kind: string; jsDoc?: { doc?: string; tags?: DocTag[] } }[];
}

test("docs: every export of mod.ts has a description and an @example", async () => {
  const { code, output } = await deno("doc", "--json", "mod.ts");
  assert.equal(code, 0, output);
  const json = JSON.parse(output.slice(output.indexOf("{")));
  const mod = json.nodes[new URL("mod.ts", root).href];
  const moduleTags: DocTag[] = mod.module_doc?.tags ?? [];
  assert.ok(moduleTags.some((t) => t.kind === "module"), "mod.ts has no @module doc");
  assert.ok(moduleTags.some((t) => t.kind === "example"), "mod.ts has no quick-start @example");

  const symbols: DocSymbol[] = mod.symbols;
  assert.ok(symbols.length >= 10, `only ${symbols.length} exports found`);
  const undocumented: string[] = [];
  for (const symbol of symbols) {
    for (const { jsDoc } of symbol.declarations) {
      const description = jsDoc?.doc?.trim() ?? "";
      const example = jsDoc?.tags?.some((t) => t.kind === "example") ?? false;
      if (!description) undocumented.push(`${symbol.name}: no description`);
      if (!example) undocumented.push(`${symbol.name}: no @example`);
    }
  }
  assert.deepEqual(undocumented, [], "add JSDoc to these exports:\n" + undocumented.join("\n"));
});

test("docs: every @example of the library type-checks", async () => {
  const files = sourceFiles();
  const { code, output } = await deno("check", "--reload", "--doc-only", ...files);
  assert.equal(code, 0, output);
  // An example is checked as its own module, named `file#lines.ts`.
  const checked = output.match(/^Check \S+#\d+-\d+\.ts$/gm) ?? [];
  assert.ok(checked.length >= 10, `only ${checked.length} examples were checked:\n${output}`);
});

test("docs: every README code block type-checks against this package", async () => {
  const blocks = readmeCodeBlocks();
  assert.ok(blocks >= 5, `the README has only ${blocks} TypeScript blocks`);
  const { code, output } = await deno("check", "--reload", "--doc-only", "README.md");
  assert.equal(code, 0, output);
  const checked = output.match(/^Check README\.md#\d+-\d+\.ts$/gm) ?? [];
  assert.equal(checked.length, blocks, output);
});

test("docs: every @example and README block runs without a failed assertion", async () => {
  // No permission flags: an example that needs one would fail here, which
  // is what a reader who pastes it into a script would see too.
  const { code, output } = await deno("test", "--doc", ...sourceFiles(), "README.md");
  assert.equal(code, 0, output);
  assert.doesNotMatch(output, /Assertion failed/, output);
  assert.match(output, /\d+ passed \| 0 failed/);
});

test("docs: deno doc --lint mod.ts reports nothing", async () => {
  const { code, output } = await deno("doc", "--lint", "mod.ts");
  assert.equal(code, 0, output);
  assert.doesNotMatch(output, /error|warning/i, output);
});

test("package: deno publish --dry-run publishes only mod.ts, src/, README.md and LICENSE", async () => {
  // --allow-dirty: developers run this before they commit. Slow types fail it.
  const { code, output } = await deno("publish", "--dry-run", "--allow-dirty");
  assert.equal(code, 0, output);
  const published = [...output.matchAll(/^\s+file:\/\/(\S+) \(/gm)]
    .map(([, path]) => path.slice(rootPath.length))
    .sort();
  const allowed = (path: string) =>
    path === "mod.ts" || path === "README.md" || path === "LICENSE" ||
    path === "deno.json" || // always published by Deno, even when excluded
    /^src\/([\w-]+\/)?[\w-]+\.ts$/.test(path);
  assert.deepEqual(published.filter((path) => !allowed(path)), [], output);
  for (const path of ["mod.ts", "README.md", "LICENSE", "deno.json", "src/loop.ts"]) {
    assert.ok(published.includes(path), `${path} is not published:\n${output}`);
  }
});

test("docs: the README keeps every section marker, in order", () => {
  // Each developer fills the section after its marker; polishing must keep them.
  const readme = Deno.readTextFileSync(new URL("README.md", root));
  const markers = [...readme.matchAll(/<!-- section: ([\w-]+) -->/g)].map(([, name]) => name);
  const expected = [
    "coroutines",
    "loop",
    "errors",
    "time",
    "sync",
    "threads",
    "promises",
    "isolation",
    "virtual-time",
    "performance",
    "bad-input",
    "python",
    "end",
  ];
  assert.deepEqual(markers.filter((name) => expected.includes(name)), expected);
});

test("docs: every link of the README to a heading or a file of the repository leads somewhere", () => {
  const readme = Deno.readTextFileSync(new URL("README.md", root));
  const prose = readme.replace(/^```[\s\S]*?^```/gm, ""); // not inside code blocks
  // GitHub's anchors: lower case, punctuation dropped, spaces as hyphens.
  const anchors = new Set(
    [...prose.matchAll(/^#{1,6} (.+)$/gm)].map(([, heading]) =>
      heading.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replaceAll(" ", "-")
    ),
  );
  const broken: string[] = [];
  for (const [, target] of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
    if (target.startsWith("#")) {
      if (!anchors.has(target.slice(1))) broken.push(target);
    } else {
      try {
        Deno.statSync(new URL(target.split("#")[0], root));
      } catch {
        broken.push(target);
      }
    }
  }
  assert.deepEqual(broken, [], `README links that lead nowhere: ${broken.join(", ")}`);
});
