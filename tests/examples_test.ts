/**
 * The examples work as their documentation says: `examples/server.ts` answers
 * real HTTP requests (normal, over budget, abandoned by the client) and stops
 * the work of a client that went away; `deno task demo` runs the pipeline
 * demo (stages connected by channels) to its summary with the permissions its task states;
 * `examples/cli.ts` stops on Ctrl-C (a real SIGINT) with every worker cleaning up.
 */
import assert from "node:assert/strict";
import { type DashboardServer, startServer } from "../examples/server.ts";
import { Script, test } from "./_helper.ts";

const root = new URL("..", import.meta.url);

const quiet = () => {};

/** Polls `condition` every 5 ms, for at most `ms`; fails with `what` if it never holds. */
async function until(what: string, condition: () => boolean, ms = 5_000): Promise<void> {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Starts the server on 127.0.0.1, port 0, runs `fn` with it, and shuts it down. */
async function withServer(
  options: { timeoutMs?: number; maxBackendCalls?: number },
  fn: (server: DashboardServer) => Promise<void>,
): Promise<void> {
  const server = await startServer({ hostname: "127.0.0.1", port: 0, onListen: quiet, ...options });
  try {
    await fn(server);
  } finally {
    await server.shutdown();
  }
}

test("server: a request gathers four backend calls and answers 200", async () => {
  await withServer({}, async ({ url, stats }) => {
    const response = await fetch(`${url}/dashboard?user=ada&latency=20`);
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.user, "ada");
    assert.equal(body.orders, 9);
    assert.deepEqual(body.recommendations, ["tinyio", "trio", "deno"]);
    assert.equal(body.notifications, 2);
    // Gathered, not one after the other: the slowest call (30 ms), not the sum (80 ms)...
    // give or take two noisy shared cores.
    assert.ok(body.ms >= 25 && body.ms < 1_000, `took ${body.ms} ms`);
    assert.deepEqual(
      [stats.started, stats.ok, stats.timedOut, stats.cancelled, stats.running],
      [1, 1, 0, 0, 0],
    );
    assert.equal(stats.backendCalls, 4);
    assert.equal(stats.backendAborted, 0);
    assert.equal(stats.backendInFlight, 0);
  });
});

test("server: a request over its budget answers 504 and its backend calls are stopped", async () => {
  await withServer({ timeoutMs: 100 }, async ({ url, stats }) => {
    const t0 = performance.now();
    const response = await fetch(`${url}/dashboard?user=ada&latency=20000`);
    const elapsed = performance.now() - t0;
    assert.equal(response.status, 504);
    assert.deepEqual(await response.json(), { error: "over the 100 ms budget" });
    assert.ok(elapsed >= 90 && elapsed < 5_000, `answered after ${elapsed} ms`);
    // The response comes after the run has settled, so after every call was stopped.
    assert.equal(stats.timedOut, 1);
    assert.equal(stats.backendCalls, 4);
    assert.equal(stats.backendAborted, 4);
    assert.equal(stats.backendInFlight, 0);
    assert.equal(stats.running, 0);
    assert.equal(stats.cancelled, 0, "a timeout is not a cancellation of the request");
  });
});

test("server: a client that goes away cancels its coroutine and its backend calls", async () => {
  await withServer({}, async ({ url, stats }) => {
    const client = new AbortController();
    const request = fetch(`${url}/dashboard?user=ada&latency=20000`, { signal: client.signal });
    await until("the four backend calls to start", () => stats.backendInFlight === 4);
    assert.equal(stats.running, 1);
    client.abort();
    await assert.rejects(request, { name: "AbortError" });
    await until("the request's run to end", () => stats.running === 0);
    assert.equal(stats.cancelled, 1, "the coroutine got a CancelledError");
    assert.equal(stats.backendAborted, 4, "every backend call's signal was aborted");
    assert.equal(stats.backendInFlight, 0);
    assert.equal(stats.ok + stats.timedOut, 0);
  });
});

test("server: one semaphore bounds the backend calls of all requests together", async () => {
  await withServer({ maxBackendCalls: 3 }, async ({ url, stats }) => {
    const responses = await Promise.all(
      ["a", "b", "c", "d", "e"].map((user) => fetch(`${url}/dashboard?user=${user}&latency=15`)),
    );
    const bodies = await Promise.all(responses.map((response) => response.json()));
    assert.deepEqual(responses.map((response) => response.status), [200, 200, 200, 200, 200]);
    assert.deepEqual(bodies.map((body) => body.user), ["a", "b", "c", "d", "e"]);
    assert.equal(stats.backendCalls, 20);
    assert.equal(stats.backendMostInFlight, 3);
    assert.equal(stats.backendInFlight, 0);
  });
});

test("server: bad input answers 400, unknown paths 404, and /stats the counters", async () => {
  await withServer({}, async ({ url }) => {
    const missingUser = await fetch(`${url}/dashboard`);
    assert.equal(missingUser.status, 400);
    assert.match(await missingUser.text(), /give \?user=name/);
    const badLatency = await fetch(`${url}/dashboard?user=ada&latency=-5`);
    assert.equal(badLatency.status, 400);
    await badLatency.body?.cancel();
    const unknown = await fetch(`${url}/nothing`);
    assert.equal(unknown.status, 404);
    await unknown.body?.cancel();
    const stats = await (await fetch(`${url}/stats`)).json();
    assert.equal(stats.started, 0);
  });
});

test("server: runs directly with the command its documentation gives", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "examples/server.ts", "0", "127.0.0.1"],
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const { value: first } = await lines.read();
    const address = first?.match(/Listening on (http:\/\/127\.0\.0\.1:\d+)\/dashboard\?user=ada/);
    assert.ok(address, `unexpected first output: ${first}`);
    const response = await fetch(`${address[1]}/dashboard?user=grace&latency=5`);
    assert.equal(response.status, 200);
    assert.equal((await response.json()).user, "grace");
  } finally {
    child.kill("SIGTERM");
    await lines.cancel();
    await child.status;
  }
});

test("demo: `deno task demo` runs the pipeline and the crash to their summaries", async () => {
  const t0 = performance.now();
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["task", "demo"],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - t0) / 1000;
  const out = new TextDecoder().decode(stdout);
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, out + err);
  assert.ok(seconds < 60, `the demo took ${seconds} s`);
  // Not a terminal: plain lines, no carriage returns or escape codes.
  assert.ok(!out.includes("\r") && !out.includes("\x1b["), out);
  assert.doesNotMatch(err, /error|warning/i, err);

  // Part 1: every document accounted for, the five huge ones stopped at their budget and
  // named as such (others that ran out of time on a busy machine are named apart).
  const done = out.match(/done in [\d.]+ s: (\d+) documents hashed and stored, (\d+) stopped/);
  assert.ok(done, out);
  assert.equal(Number(done[1]) + Number(done[2]), 300, out);
  const huge = out.match(/stopped: the huge documents ([\d, ]+)\n/);
  assert.ok(huge, out);
  assert.deepEqual(huge[1].split(", ").map(Number), [59, 119, 179, 239, 299], out);
  const slow = out.match(/stopped too, out of time on a busy machine: documents ([\d, ]+)\n/);
  const slowIds = slow === null ? [] : slow[1].split(", ").map(Number);
  assert.ok(slowIds.every((id) => (id + 1) % 60 !== 0), out);
  assert.equal(5 + slowIds.length, Number(done[2]), out);
  assert.match(out, /300\/300 {2}ok \d+ {2}timed out \d+/, "a progress line at the end");
  // Every progress line counts the same results: ok + timed out is what is done.
  for (const [, n, ok, stopped] of out.matchAll(/(\d+)\/300 {2}ok (\d+) {2}timed out (\d+)/g)) {
    assert.equal(Number(ok) + Number(stopped), Number(n), out);
  }

  // Part 2: the very error, naming the count it is about; everything cancelled, every finally run.
  assert.match(out, /part 2: the same job, but the disk holds only 100 documents/);
  assert.match(
    out,
    /run rejected with the very error thrown: Error: disk full: 100 documents stored, no room for document \d+/,
  );
  assert.match(
    out,
    /cancelled mid-work: \d+ hashing \(on a thread\), \d+ downloading, \d+ storing/,
  );
  const finals = out.match(/finally blocks run: (\d+) of (\d+) stage coroutines/);
  assert.ok(finals && finals[1] === finals[2] && Number(finals[1]) >= 5, out);
  // Asynchronous cleanup through shield, waited for before the run rejected.
  assert.match(out, /downloads deleted through shield after their CancelledError: [1-9]/);
});

test("cli: Ctrl-C stops the uploads; every worker cleans up and the script exits with 130", async () => {
  await using script = new Script(new URL("examples/cli.ts", root)); // no permission flag
  await script.waitFor("stdout", /^worker \d: uploaded /m);
  script.kill("SIGINT");
  const status = await script.finish();
  assert.deepEqual({ ...status }, { success: false, code: 130, signal: null }, script.output());
  const out = script.stdout;
  assert.match(script.stderr, /^main: SIGINT: cancelling every coroutine/m);
  for (const worker of [1, 2, 3, 4]) {
    // Each was in the middle of a file: it removes it, is cancelled, says goodbye through
    // shield (asynchronously), then closes its connection.
    const cleanup = new RegExp(
      `^worker ${worker}: removed the partial upload of photo-\\d+\\.jpg\n` +
        `worker ${worker}: cancelled\n(?:.*\n)*?worker ${worker}: said goodbye to the server\n` +
        `(?:.*\n)*?worker ${worker}: closed its connection$`,
      "m",
    );
    assert.match(out, cleanup, out);
  }
  assert.match(out, /^reporter: stopped$/m);
  assert.doesNotMatch(out, /files uploaded/);
});
