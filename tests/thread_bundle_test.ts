/**
 * The worker's module is written from the source text of functions
 * (src/thread/worker.ts), so it must survive what bundlers do to that text:
 * rename every function (minify) and wrap named nested functions in a helper
 * of their own (keep names). The package, bundled both ways by `deno bundle`,
 * runs calls, errors and cancellations on workers in a child process.
 */
import assert from "node:assert/strict";
import { test } from "./_helper.ts";

const root = new URL("..", import.meta.url);

/** A script that uses the bundle `code` for threads and prints what it got. */
function scriptUsing(code: string): string {
  const bundle = `data:text/javascript,${encodeURIComponent(code)}`;
  return `
    const { Loop, runInThread, ThreadPool, cancelled, timeout } = await import(${
    JSON.stringify(bundle)
  });
    const pool = new ThreadPool(2);
    const out = await new Loop().run(function* () {
      const sum = yield* runInThread((a, b) => a + b, 2, 3);
      const squares = yield* pool.map((x) => x * x, [1, 2, 3]);
      let failed;
      try {
        yield* runInThread(() => { throw new RangeError("on the worker"); });
      } catch (error) {
        failed = error.name + ": " + error.message;
      }
      const [, inTime] = yield* timeout(runInThread(() => { while (!cancelled()); return 0; }), 50);
      return { sum, squares, failed, inTime };
    }());
    pool.close();
    console.log(JSON.stringify(out));
  `;
}

function encode(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Runs `deno <args>`, killed after 20 s (a worker that cannot start leaves its calls waiting). */
async function run(args: string[], stdin?: string): Promise<{ code: number; out: string }> {
  const killer = new AbortController();
  const timer = setTimeout(() => killer.abort(), 20_000);
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: root,
      env: { NO_COLOR: "1" },
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal: killer.signal,
    }).spawn();
    if (stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(encode(stdin));
      await writer.close();
    }
    const { code, stdout, stderr } = await child.output();
    const text = new TextDecoder();
    return { code, out: text.decode(stdout) + text.decode(stderr) };
  } finally {
    clearTimeout(timer);
  }
}

for (const flags of [["--minify"], ["--minify", "--keep-names"]]) {
  test(`threads work from the package bundled with deno bundle ${flags.join(" ")}`, async () => {
    const bundled = await run(["bundle", "--quiet", ...flags, "mod.ts"]);
    assert.equal(bundled.code, 0, bundled.out);
    const ran = await run(["run", "--no-config", "-"], scriptUsing(bundled.out));
    assert.equal(ran.code, 0, ran.out);
    assert.deepEqual(JSON.parse(ran.out), {
      sum: 5,
      squares: [1, 4, 9],
      failed: "RangeError: on the worker",
      inTime: false,
    });
  });
}
