/**
 * `main`, the entry point for scripts: real child processes (tests/fixtures/main_script.ts, run
 * with no permission flag unless a test says otherwise) and real signals. Each test reads the
 * child's `ready` line before it signals, and ends with the child exited and its streams read.
 * Exit codes: `signal: null` with code 130 means the script exited with 130 (`Deno.exit`);
 * `signal: "SIGINT"` means the signal's default action killed it.
 */
import assert from "node:assert/strict";
import { type Coro, main, sleep } from "../mod.ts";
import { Script, test } from "./_helper.ts";

const fixture = new URL("./fixtures/main_script.ts", import.meta.url);

const exited = (code: number) => ({ success: code === 0, code, signal: null });
const killedBy = (signal: Deno.Signal, code: number) => ({ success: false, code, signal });

/** Each `finally <name>` line the script printed, in order. */
const finallies = (stdout: string) =>
  [...stdout.matchAll(/^finally (.+)$/gm)].map(([, name]) => name).sort();

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  test(`main: ${signal} cancels every coroutine, every finally runs, then exit ${code}`, async () => {
    await using script = new Script(fixture, ["workers"]);
    await script.waitFor("stdout", /^ready$/m);
    script.kill(signal);
    assert.deepEqual({ ...await script.finish() }, exited(code), script.output());
    assert.deepEqual(finallies(script.stdout), ["ready", "worker 1", "worker 2", "worker 3"]);
    assert.match(script.stderr, new RegExp(`^main: ${signal}: cancelling every coroutine`, "m"));
    assert.doesNotMatch(script.stdout, /main resolved/);
  });
}

test("main: errors raised while cleaning up after a signal are printed; the exit code stays 130", async () => {
  for (const exceptionGroup of [[], ["exceptionGroup"]]) {
    await using script = new Script(fixture, ["cleanupFails", ...exceptionGroup]);
    await script.waitFor("stdout", /^ready$/m);
    script.kill("SIGINT");
    assert.deepEqual({ ...await script.finish() }, exited(130), script.output());
    assert.deepEqual(finallies(script.stdout), ["ready", "worker 1", "worker 2"]);
    assert.match(
      script.stderr,
      /^main: errors raised while cleaning up:\nError: worker 2 failed to clean up\n\s+at worker \(file:.*main_script\.ts:\d+:\d+\)/m,
    );
    // The cancellations themselves are no errors: not printed, with exceptionGroup too.
    assert.doesNotMatch(script.stderr, /CancelledError/);
  }
});

for (const flags of [[], ["--allow-run"]]) {
  test(
    `main: a second signal during a slow cleanup prints what is still running and exits (${
      flags.join(" ") || "no flag"
    })`,
    async () => {
      // The cleanup waits 30 s for a promise that ignores its abort.
      await using script = new Script(fixture, ["slowCleanup"], flags);
      await script.waitFor("stdout", /^ready$/m);
      script.kill("SIGINT");
      await script.waitFor("stdout", /^finally worker 2$/m);
      // Longer than the watchdog's grace: busy cleaning up is not blocked, so it stays quiet.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(script.exited, false, "the first signal waits for the cleanup");
      script.kill("SIGINT");
      // Exited by main (not killed by the watchdog, even with --allow-run).
      assert.deepEqual({ ...await script.finish() }, exited(130), script.output());
      assert.ok(script.elapsed() < 15_000, `exited after ${script.elapsed()} ms, not at once`);
      assert.match(
        script.stderr,
        /^main: SIGINT after \d+\.\d s of cleanup: exiting with code 130 without waiting/m,
      );
      // What is still running, as formatSnapshot draws it: the cleanup in its shield.
      assert.match(script.stderr, /Still running:\n/);
      assert.match(script.stderr, /#\d+.*cancelling, waiting for shield \(coroutine \d+\)/);
      assert.doesNotMatch(script.stderr, /blocked/);
    },
  );
}

test("main: a different second signal exits with the first one's code", async () => {
  await using script = new Script(fixture, ["slowCleanup"]);
  await script.waitFor("stdout", /^ready$/m);
  script.kill("SIGINT");
  await script.waitFor("stdout", /^finally worker 2$/m);
  script.kill("SIGTERM");
  assert.deepEqual({ ...await script.finish() }, exited(130), script.output());
  assert.match(script.stderr, /^main: SIGTERM after \d+\.\d s of cleanup: exiting with code 130/m);
});

test("main: a signal during a crash's cleanup lets the cleanup finish; the run's error is reported", async () => {
  // Issue 19's fault row, first half: the run fails and its cleanup waits 1.5 s for a promise.
  await using script = new Script(fixture, ["failsSlowly", "1500"]);
  await script.waitFor("stdout", /^finally worker 1$/m); // the crash is cancelling
  script.kill("SIGINT");
  assert.deepEqual({ ...await script.finish() }, exited(1), script.output());
  assert.ok(script.elapsed() >= 1_400, `exited after ${script.elapsed()} ms, before the cleanup`);
  assert.deepEqual(finallies(script.stdout), ["stubborn", "worker 1"]);
  assert.match(script.stderr, /^main: the run failed:\nError: boom\n/m);
});

test("main: a second signal during a crash's cleanup exits at once", async () => {
  // Issue 19's fault row, second half: this cleanup would wait 30 s.
  await using script = new Script(fixture, ["failsSlowly", "30000"]);
  await script.waitFor("stdout", /^finally worker 1$/m);
  script.kill("SIGINT");
  await script.waitFor("stderr", /^main: SIGINT: cancelling/m);
  script.kill("SIGINT");
  assert.deepEqual({ ...await script.finish() }, exited(130), script.output());
  assert.ok(script.elapsed() < 15_000, `exited after ${script.elapsed()} ms, not at once`);
  assert.match(script.stderr, /^main: SIGINT after \d+\.\d s of cleanup: exiting with code 130/m);
});

test("main: a failing run prints the error with its stack and exits with 1", async () => {
  await using script = new Script(fixture, ["fails"]);
  assert.deepEqual({ ...await script.finish() }, exited(1), script.output());
  assert.deepEqual(finallies(script.stdout), ["worker 1", "worker 2"]);
  assert.match(
    script.stderr,
    /^main: the run failed:\nError: boom\n\s+at failing \(file:.*main_script\.ts:\d+:\d+\)/m,
  );
});

test("main: a run whose cleanup fails too prints the AggregateError with its errors", async () => {
  await using script = new Script(fixture, ["fails", "cleanup fails"]);
  assert.deepEqual({ ...await script.finish() }, exited(1), script.output());
  const [, errors] =
    script.stderr.match(/^main: the run failed:\nAggregateError: [^]*?errors\]: ([^]*)/m) ??
      [];
  assert.ok(errors, script.output());
  assert.match(errors, /Error: boom\n\s+at failing \(/);
  assert.match(errors, /Error: worker 2 failed to clean up\n\s+at worker \(/);
});

test("main: a run that succeeds resolves with its value and the process ends by itself", async () => {
  await using script = new Script(fixture, ["succeeds"]);
  // No listener, timer or watchdog Worker keeps the process alive after main resolves.
  assert.deepEqual({ ...await script.finish() }, exited(0), script.output());
  assert.equal(script.stdout, "resolved 42\n");
  assert.equal(script.stderr, "");
});

test("main: after it resolves no listener is left: a SIGINT kills a blocked script at once", async () => {
  // With any listener left (main's own or its watchdog's), the script would run its 20 s.
  await using script = new Script(fixture, ["succeeds", "block"]);
  await script.waitFor("stdout", /^ready$/m);
  script.kill("SIGINT");
  assert.deepEqual({ ...await script.finish() }, killedBy("SIGINT", 130), script.output());
  assert.ok(script.elapsed() < 15_000, `killed after ${script.elapsed()} ms`);
  assert.doesNotMatch(script.stdout, /not stopped/);
});

test("main: blocked, without --allow-run: the first signal prints that the thread is blocked and how to end it", async () => {
  await using script = new Script(fixture, ["blocked", "30000"]);
  await script.waitFor("stdout", /^ready$/m);
  script.kill("SIGINT");
  const [, pid] = await script.waitFor(
    "stderr",
    /^main: the loop's thread is blocked in synchronous code .*To end the process now: kill -9 (\d+) \(or run the script with --allow-run/m,
  );
  assert.equal(Number(pid), script.pid);
  assert.equal(script.exited, false);
  script.kill("SIGKILL"); // as the message says
  assert.deepEqual({ ...await script.finish() }, killedBy("SIGKILL", 137), script.output());
  assert.doesNotMatch(script.stderr, /cancelling/, "the loop's thread never got to it");
});

test("main: blocked, with --allow-run: a second signal kills the process", async () => {
  await using script = new Script(fixture, ["blocked", "30000"], ["--allow-run"]);
  await script.waitFor("stdout", /^ready$/m);
  script.kill("SIGINT");
  await script.waitFor(
    "stderr",
    /blocked in synchronous code.*Send SIGINT again to kill the process/,
  );
  script.kill("SIGINT");
  assert.deepEqual({ ...await script.finish() }, killedBy("SIGKILL", 137), script.output());
  assert.ok(script.elapsed() < 15_000, `killed after ${script.elapsed()} ms`);
  assert.match(
    script.stderr,
    /^main: SIGINT again while the loop's thread is blocked .*killing the process/m,
  );
});

test("main: a thread blocked for a while acts on the signal once it returns: every finally runs", async () => {
  await using script = new Script(fixture, ["blocked", "1500"]);
  await script.waitFor("stdout", /^ready$/m);
  script.kill("SIGINT");
  await script.waitFor("stderr", /blocked in synchronous code/);
  assert.deepEqual({ ...await script.finish() }, exited(130), script.output());
  assert.deepEqual(finallies(script.stdout), ["worker 1"]);
  // Blocked, the watchdog speaks first; then the loop's thread cancels.
  assert.match(script.stderr, /blocked in synchronous code[^]*\nmain: SIGINT: cancelling/);
});

test("main: resolves with the value, also given a function that makes the coroutine", async () => {
  function* answer(): Coro<number> {
    yield sleep(1);
    return 42;
  }
  assert.equal(await main(answer()), 42);
  assert.equal(await main(answer), 42);
  assert.equal(await main(() => answer(), { exceptionGroup: true }), 42);
});

test("main: bad input rejects at once with an error that names the value and the fix", async () => {
  await assert.rejects(main(42 as never), {
    name: "TypeError",
    message: /^main\(\) takes a coroutine, such as main\(app\(\)\) .*; got 42 \(number\)\.$/,
  });
  await assert.rejects(main((() => 42) as never), {
    name: "TypeError",
    message:
      /^main\(f\): f returned 42 \(number\), not a coroutine\. Give the coroutine, `main\(app\(\)\)`/,
  });
  await assert.rejects(main((async () => {}) as never), {
    name: "TypeError",
    message:
      /f returned a Promise, not a coroutine\. main runs coroutines .*main\(fromPromise\(p\)\)/,
  });
  await assert.rejects(main(Promise.resolve(1) as never), {
    name: "TypeError",
    message: /got a Promise\. main runs coroutines/,
  });
  await assert.rejects(main(sleep(1), { exceptionGroup: "yes" as never }), {
    name: "TypeError",
    message:
      'main(coro, { exceptionGroup }): exceptionGroup is "yes"; give true, false or leave it out.',
  });
  const thrown = new RangeError("no config");
  await assert.rejects(
    main(() => {
      throw thrown;
    }),
    (e) => e === thrown,
  );
  // One at a time: two would both exit on a signal, each cutting the other's cleanup short.
  const first = main(sleep(20));
  await assert.rejects(main(sleep(1)), { name: "Error", message: /^main\(\) is already running/ });
  await first;
});
