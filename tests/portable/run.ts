/**
 * The portable test run (`deno task test:runtimes`): the portable subset of
 * tests/ — written once, for Deno — on Node 22+, Bun, headless Chromium and
 * workerd. Each test file is bundled with tests/portable/harness.ts by
 * `deno bundle` and run in a fresh process (Node, Bun), page (Chromium) or
 * isolate (workerd); each runtime prints `N passed, M failed, K skipped`, and
 * the run fails on any failure, on a runtime that cannot be started, and on a
 * Node or Bun process that does not exit by itself after its last test (it
 * left something running).
 *
 * Options: `--runtimes=node,bun,chromium,workerd,workerd-2025-09-01,…` (default: all),
 * `--files=loop,time` (default: all of {@linkcode PORTABLE}), `--verbose` (every test).
 * Binaries: `TINYIO_NODE` (default `node`; must be 22+), `TINYIO_BUN`
 * (default `bun`), `TINYIO_CHROMIUM` (default `/usr/bin/chromium`); workerd
 * comes from its npm package.
 *
 * @module
 */

import { BUN, bundle, checkBinary, type Flavor, NODE, type ProcessBinary } from "./bundle.ts";
import type { Outcome, Report } from "./harness.ts";

/**
 * The portable subset: tests/<name>_test.ts for each name. A name whose file
 * is not there yet (it lands with another branch) is reported and left out.
 */
export const PORTABLE = [
  "loop",
  "host",
  "time",
  "sync",
  "promise",
  "isolate",
  "clock",
  "channel", // with channels
  "thread_portable", // with the thread adapters
];

const ROOT = new URL("../../", import.meta.url);
const MARK = "##tinyio-report ";
/** A Node or Bun process must exit by itself this soon after its last test. */
const EXIT_LIMIT_MS = 5_000;
/** One file's tests, all together, in one runtime. */
const FILE_LIMIT_MS = 300_000;
/**
 * Besides workerd at its own compatibility date (the npm package's) with
 * `nodejs_compat`: older dates, which have no `setImmediate`. (Before 2025-05
 * workerd also lacks `FinalizationRegistry`, which one test of weak results
 * uses and the library does not.)
 */
const WORKERD_DATES = ["2025-09-01"];

/** One runtime: how to run a bundled test file there. */
interface Runtime {
  name: string;
  flavor: Flavor;
  /** Pages of examples/ that this runtime also checks (run by the same `run`). */
  examples?: string[];
  /** Sets up (a browser, a server); returns how to run one bundle, and how to stop. */
  start(dir: string, files: string[]): Promise<{
    run(file: string): Promise<Report>;
    stop(): Promise<void>;
  }>;
}

/**
 * The processes this run started and has not seen end. If the run itself is
 * stopped (Ctrl-C, a CI time limit), they are killed first: a workerd whose
 * test spins would otherwise run on for ever. (Puppeteer closes its browser
 * on those signals by itself.)
 */
const children = new Set<Deno.ChildProcess>();
/** This run's temporary folder (bundles, pages, configs), removed at the end. */
let tempDir: string | undefined;

function spawn(command: string, args: string[]): Deno.ChildProcess {
  const child = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).spawn();
  children.add(child);
  child.status.finally(() => children.delete(child));
  return child;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    for (const child of children) child.kill("SIGKILL");
    if (tempDir !== undefined) Deno.removeSync(tempDir, { recursive: true });
    Deno.exit(signal === "SIGINT" ? 130 : 143);
  });
}

function option(name: string): string | undefined {
  const arg = Deno.args.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (arg === undefined) return undefined;
  return arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : "";
}

/** Runs `file`'s bundle with a Node-like binary (`node`, `bun`): fresh process, report on stdout. */
function processRuntime(name: string, binary: ProcessBinary): Runtime {
  return {
    name,
    flavor: "node",
    async start(dir: string) {
      await checkBinary(name, binary);
      const drive = `${dir}/drive-${name}.mjs`;
      await Deno.writeTextFile(
        drive,
        binary.prelude +
          `const { runTests } = await import(new URL(process.argv[2], import.meta.url));\n` +
          `const report = await runTests();\n` +
          `process.stdout.write("\\n${MARK}" + JSON.stringify(report) + "\\n");\n`,
      );
      return {
        run: (file: string) =>
          runProcess(binary.command, [...binary.flags, drive, `./node/${file}.js`]),
        stop: () => Promise.resolve(),
      };
    },
  };
}

/** Spawns, reads the report, then gives the process EXIT_LIMIT_MS to exit by itself. */
async function runProcess(binary: string, args: string[]): Promise<Report> {
  const child = spawn(binary, args);
  let out = "";
  let err = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stdout) out += decoder.decode(chunk, { stream: true });
  })();
  const readingErr = (async () => {
    for await (const chunk of child.stderr) err += decoder.decode(chunk, { stream: true });
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let killedFor = "";
  const kill = (why: string) => {
    killedFor = why;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  };
  timer = setTimeout(() => kill(`did not finish within ${FILE_LIMIT_MS / 1000} s`), FILE_LIMIT_MS);
  // Once the report is out, the process must end by itself soon.
  const watch = setInterval(() => {
    if (out.includes(MARK) && out.endsWith("\n") && killedFor === "") {
      clearInterval(watch);
      clearTimeout(timer);
      timer = setTimeout(
        () =>
          kill(
            `did not exit within ${EXIT_LIMIT_MS / 1000} s after its last test: it left ` +
              `something running (a timer, a socket, a worker)`,
          ),
        EXIT_LIMIT_MS,
      );
    }
  }, 20);
  const status = await child.status;
  clearInterval(watch);
  clearTimeout(timer);
  await Promise.all([reading, readingErr]);
  const line = out.split("\n").find((l) => l.startsWith(MARK));
  const report: Report = line
    ? JSON.parse(line.slice(MARK.length))
    : { runtime: binary, hostReturn: "?", outcomes: [] };
  if (killedFor !== "" || !status.success || !line) {
    const why = killedFor || (line ? `exited with code ${status.code}` : `gave no report`);
    report.outcomes.push({
      name: "(the process)",
      status: "failed",
      ms: 0,
      detail: `${why}\n${err.trim().split("\n").slice(-20).join("\n")}`,
    });
  }
  return report;
}

/** Serves `dir` on 127.0.0.1, cross-origin isolated (COOP/COEP), for Chromium. */
function serve(dir: string): Deno.HttpServer<Deno.NetAddr> {
  const types: Record<string, string> = {
    js: "text/javascript",
    html: "text/html",
    map: "application/json",
  };
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    const headers = {
      "content-type": types[path.split(".").pop()!] ?? "application/octet-stream",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
    };
    if (path.includes("..")) return new Response("no", { status: 403 });
    try {
      return new Response(await Deno.readFile(`${dir}${path}`), { headers });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

/** What examples/browser.html shows when it is done: the sum of the squares 0² … 19². */
const BROWSER_EXAMPLE_SUM = "2470";
/** The URL of the package in examples/browser.html's import map, served from a local bundle here. */
const ESM_SH = "https://esm.sh/jsr/@tinyio/core";

const chromium: Runtime = {
  name: "chromium",
  flavor: "web",
  examples: ["browser.html"],
  async start(dir: string, files: string[]) {
    const { default: puppeteer } = await import("puppeteer-core");
    const profile = await Deno.makeTempDir({ prefix: "tinyio-chromium-" });
    const executablePath = Deno.env.get("TINYIO_CHROMIUM") ?? "/usr/bin/chromium";
    const browser = await puppeteer.launch({
      executablePath,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
        "--js-flags=--expose-gc", // for the tests of weak results
      ],
    }).catch((e: Error) => {
      throw new Error(`chromium: cannot start ${executablePath} (${e.message})`);
    });
    for (const file of files) {
      await Deno.writeTextFile(
        `${dir}/web/${file}.html`,
        `<!doctype html><meta charset="utf-8"><title>${file}</title><link rel="icon" href="data:,">\n` +
          `<script type="module">\n` +
          `import { runTests } from "./${file}.js";\n` +
          `window.__report = await runTests();\n</script>\n`,
      );
    }
    // The examples load the package from esm.sh: here, from a bundle of mod.ts.
    await bundle([new URL("mod.ts", ROOT).pathname], `${dir}/lib`, "web");
    await Deno.mkdir(`${dir}/examples`);
    for (const example of this.examples ?? []) {
      const html = await Deno.readTextFile(new URL(`examples/${example}`, ROOT));
      if (!html.includes(ESM_SH)) throw new Error(`examples/${example} does not import ${ESM_SH}`);
      await Deno.writeTextFile(`${dir}/examples/${example}`, html.replace(ESM_SH, "/lib/mod.js"));
    }
    const server = serve(dir);
    const origin = `http://127.0.0.1:${server.addr.port}`;
    return {
      async run(file: string): Promise<Report> {
        if (file.endsWith(".html")) {
          return await runBrowserExample(browser, `${origin}/examples/${file}`);
        }
        const page = await browser.newPage();
        const errors: string[] = [];
        page.on("pageerror", (e: unknown) => errors.push(String((e as Error).stack ?? e)));
        page.on("console", (m: { type(): string; text(): string }) => {
          if (m.type() === "error") errors.push(`console.error: ${m.text()}`);
        });
        page.on(
          "requestfailed",
          (r: { url(): string }) => errors.push(`failed to load ${r.url()}`),
        );
        try {
          await page.goto(`${origin}/web/${file}.html`);
          // Polled from here, so that a page error ends the wait at once.
          const until = performance.now() + FILE_LIMIT_MS;
          while (errors.length === 0 && !(await page.evaluate("window.__report !== undefined"))) {
            if (performance.now() > until) {
              errors.push(`no report within ${FILE_LIMIT_MS / 1000} s`);
              break;
            }
            await new Promise((r) => setTimeout(r, 100));
          }
          const report = (await page.evaluate("window.__report")) as Report | undefined;
          const out = report ?? { runtime: "chromium", hostReturn: "?", outcomes: [] };
          for (const e of errors) {
            out.outcomes.push({ name: "(the page)", status: "failed", ms: 0, detail: e });
          }
          return out;
        } finally {
          await page.close();
        }
      },
      async stop() {
        await browser.close();
        await server.shutdown();
        await Deno.remove(profile, { recursive: true });
      },
    };
  },
};

/**
 * examples/browser.html: the gather ends with the right sum, and while a
 * coroutine counts primes on the page's thread the page still answers (each
 * `page.evaluate` runs only when the loop has returned to the browser) and
 * shows the progress bar at many values on its way to full.
 */
async function runBrowserExample(
  // deno-lint-ignore no-explicit-any
  browser: any,
  url: string,
): Promise<Report> {
  const name = "examples/browser.html: a gather with a progress bar, beside a busy coroutine";
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e: Error) => errors.push(String(e.stack ?? e)));
  const started = performance.now();
  try {
    await page.goto(url);
    const seen = new Set<number>();
    let done: string | undefined;
    let last = performance.now();
    let longestGap = 0;
    while (done === undefined && errors.length === 0 && performance.now() - started < 30_000) {
      const [value, finished] = await page.evaluate(
        "[document.getElementById('bar').value, document.body.dataset.done ?? null]",
      ) as [number, string | null];
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
      seen.add(value);
      done = finished ?? undefined;
      await new Promise((r) => setTimeout(r, 10));
    }
    const between = [...seen].filter((v) => v > 0 && v < 20).length;
    const failure = errors[0] ??
      (done !== BROWSER_EXAMPLE_SUM
        ? `the page ended with ${done ?? "nothing"}, not ${BROWSER_EXAMPLE_SUM}`
        : between < 5
        ? `the progress bar was seen at only ${between} values between empty and full`
        : longestGap > 1_000
        ? `the page did not answer for ${longestGap.toFixed(0)} ms`
        : undefined);
    const outcome: Outcome = {
      name,
      status: failure === undefined ? "passed" : "failed",
      ms: performance.now() - started,
      detail: failure,
    };
    return { runtime: "chromium", hostReturn: "?", outcomes: [outcome] };
  } finally {
    await page.close();
  }
}

/**
 * workerd, at a compatibility date: one isolate per test file, behind a
 * router worker; a GET of /<file> runs its tests and answers with the report.
 * The npm package's own date gets `nodejs_compat` and the Node-flavoured
 * bundle (node:assert from workerd); older dates, which have no
 * `setImmediate` (and before 2025-08 no `MessageChannel`), get the web one.
 */
function workerd(date?: string): Runtime {
  return {
    name: date === undefined ? "workerd" : `workerd-${date}`,
    flavor: date === undefined ? "node" : "web",
    async start(dir: string, files: string[]) {
      const pkg = await import("workerd");
      const binary: string = (pkg.default as unknown as { default: string }).default ??
        pkg.default;
      const compatibilityDate = date ?? pkg.compatibilityDate;
      const flags = date === undefined ? `"nodejs_compat"` : "";
      const flavor = date === undefined ? "node" : "web";
      const tag = date ?? "current";
      for (const file of files) {
        await Deno.writeTextFile(
          `${dir}/${flavor}/${file}.worker.js`,
          `import { runTests } from "./${file}.js";\n` +
            `export default { async fetch() { return Response.json(await runTests()); } };\n`,
        );
      }
      const router = `export default { fetch(request, env) {\n` +
        `  const name = new URL(request.url).pathname.slice(1);\n` +
        `  return env[name] ? env[name].fetch(request) : new Response("no " + name, { status: 404 });\n` +
        `} };\n`;
      await Deno.writeTextFile(`${dir}/${flavor}/router-${tag}.js`, router);
      const workers = files.map((file) =>
        `    (name = "${file}", worker = (\n` +
        `      modules = [ (name = "main.js", esModule = embed "${file}.worker.js"),\n` +
        `                  (name = "${file}.js", esModule = embed "${file}.js") ],\n` +
        `      compatibilityDate = "${compatibilityDate}", compatibilityFlags = [${flags}])),\n`
      ).join("");
      const bindings = files.map((f) => `(name = "${f}", service = "${f}")`).join(", ");
      const config = `${dir}/${flavor}/workerd-${tag}.capnp`;
      // A port picked free can be taken before workerd binds it, and workerd
      // then exits: start it again on another port, three times at most.
      let child: Deno.ChildProcess;
      let log = "";
      let collecting: Promise<unknown>;
      let base: string;
      for (let attempt = 1;; attempt++) {
        const port = freePort();
        await Deno.writeTextFile(
          config,
          `using Workerd = import "/workerd/workerd.capnp";\n` +
            `const config :Workerd.Config = (\n  services = [\n` +
            `    (name = "router", worker = (\n` +
            `      modules = [ (name = "router.js", esModule = embed "router-${tag}.js") ],\n` +
            `      compatibilityDate = "${compatibilityDate}", bindings = [ ${bindings} ])),\n` +
            workers +
            `  ],\n  v8Flags = [ "--expose-gc" ],\n  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), ` +
            `service = "router") ],\n);\n`,
        );
        const started = spawn(binary, ["serve", config]);
        let exited = false;
        started.status.then(() => exited = true);
        log = "";
        const decoder = new TextDecoder();
        const collect = async (stream: ReadableStream<Uint8Array>) => {
          for await (const chunk of stream) log += decoder.decode(chunk, { stream: true });
        };
        const streams = Promise.all([collect(started.stdout), collect(started.stderr)]);
        const url = `http://127.0.0.1:${port}`;
        let error: unknown;
        for (let tries = 0; tries <= 100 && !exited; tries++) {
          try {
            await (await fetch(`${url}/-`)).body?.cancel();
            error = undefined;
            break;
          } catch (e) {
            error = e;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        if (error === undefined && !exited) {
          child = started;
          collecting = streams;
          base = url;
          break;
        }
        if (!exited) started.kill("SIGKILL");
        await started.status;
        await streams;
        if (attempt === 3) {
          throw new Error(
            `workerd did not start (${exited ? "it exited" : (error as Error).message})\n${log}`,
          );
        }
      }
      return {
        async run(file: string): Promise<Report> {
          const response = await fetch(`${base}/${file}`, {
            signal: AbortSignal.timeout(FILE_LIMIT_MS),
          }).catch((e: Error) => new Response(e.message, { status: 599 }));
          const text = await response.text();
          if (response.ok) return JSON.parse(text);
          return {
            runtime: "workerd",
            hostReturn: "?",
            outcomes: [{
              name: "(the worker)",
              status: "failed",
              ms: 0,
              detail: `HTTP ${response.status}: ${text}\n${log.slice(-2000)}`,
            }],
          };
        },
        async stop() {
          // A worker spinning in JavaScript ignores SIGTERM: then SIGKILL.
          child.kill("SIGTERM");
          const killer = setTimeout(() => child.kill("SIGKILL"), 2_000);
          await child.status;
          clearTimeout(killer);
          await collecting;
        },
      };
    },
  };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const RUNTIMES: Runtime[] = [
  processRuntime("node", NODE),
  processRuntime("bun", BUN),
  chromium,
  workerd(),
  ...WORKERD_DATES.map(workerd),
];

/** Bundles every test file with the harness: `dir/<flavor>/<file>.js`. */
async function bundleTests(dir: string, files: string[], flavors: Set<Flavor>): Promise<void> {
  await Deno.mkdir(`${dir}/entries`);
  for (const file of files) {
    await Deno.writeTextFile(
      `${dir}/entries/${file}.ts`,
      `import "${new URL(`tests/${file}_test.ts`, ROOT)}";\n` +
        `export { runTests } from "${new URL("tests/portable/harness.ts", ROOT)}";\n`,
    );
  }
  for (const flavor of flavors) {
    await bundle(files.map((f) => `${dir}/entries/${f}.ts`), `${dir}/${flavor}`, flavor);
  }
}

/** Prints one runtime's results; returns its counts. */
function summarize(runtime: string, reports: Map<string, Report>, verbose: boolean) {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  const hostReturns = new Set<string>();
  let name = runtime;
  const skippedWhy = new Map<string, number>();
  for (const [file, report] of reports) {
    name = report.runtime;
    if (report.hostReturn !== "?") hostReturns.add(report.hostReturn);
    for (const o of report.outcomes) {
      counts[o.status]++;
      if (o.status === "failed") {
        console.log(`  FAILED ${file}: ${o.name}\n${indent(o.detail ?? "")}`);
      } else if (verbose) {
        console.log(`  ${o.status} ${file}: ${o.name} (${o.ms.toFixed(0)} ms)`);
      }
      if (o.status === "skipped") skippedWhy.set(o.detail!, (skippedWhy.get(o.detail!) ?? 0) + 1);
    }
  }
  const why = [...skippedWhy].map(([d, n]) => `${n} ${d}`).join("; ");
  console.log(
    `${runtime} (${name.slice(0, 60)}; host returns by ${[...hostReturns].join(", ")}): ` +
      `${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped` +
      (why ? ` (${why})` : ""),
  );
  return counts;
}

function indent(text: string): string {
  return text.split("\n").slice(0, 30).map((l) => `      ${l}`).join("\n");
}

if (import.meta.main) {
  const wanted = option("runtimes")?.split(",");
  const runtimes = wanted ? RUNTIMES.filter((r) => wanted.includes(r.name)) : RUNTIMES;
  for (const w of wanted ?? []) {
    if (!RUNTIMES.some((r) => r.name === w)) {
      console.error(`--runtimes: ${w} is not one of ${RUNTIMES.map((r) => r.name).join(", ")}`);
      Deno.exit(2);
    }
  }
  const files: string[] = [];
  for (const file of option("files")?.split(",") ?? PORTABLE) {
    try {
      await Deno.stat(new URL(`tests/${file}_test.ts`, ROOT));
      files.push(file);
    } catch {
      console.log(`(tests/${file}_test.ts is not here yet: left out)`);
    }
  }
  const verbose = option("verbose") !== undefined;
  const dir = tempDir = await Deno.makeTempDir({ prefix: "tinyio-portable-" });
  const total = { passed: 0, failed: 0, skipped: 0 };
  try {
    let t0 = performance.now();
    await bundleTests(dir, files, new Set(runtimes.map((r) => r.flavor)));
    console.log(`bundled ${files.length} test files in ${(performance.now() - t0).toFixed(0)} ms`);
    for (const runtime of runtimes) {
      t0 = performance.now();
      const reports = new Map<string, Report>();
      try {
        const session = await runtime.start(dir, files);
        try {
          for (const file of [...files, ...runtime.examples ?? []]) {
            reports.set(file, await session.run(file));
          }
        } finally {
          await session.stop();
        }
      } catch (e) {
        const failure: Outcome = {
          name: "(starting the runtime)",
          status: "failed",
          ms: 0,
          detail: String((e as Error).stack ?? e),
        };
        reports.set("-", { runtime: runtime.name, hostReturn: "?", outcomes: [failure] });
      }
      const counts = summarize(runtime.name, reports, verbose);
      console.log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      total.passed += counts.passed;
      total.failed += counts.failed;
      total.skipped += counts.skipped;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log(`runtimes: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
  if (total.failed > 0) Deno.exit(1);
}
