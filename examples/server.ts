/**
 * A Deno Deploy-style HTTP server with one tinyio run per request.
 *
 * `GET /dashboard?user=ada` builds a user's dashboard from four backend
 * calls made at the same time (a gather). Backend calls go through one
 * `Semaphore` shared by every request, so the backend never sees more than
 * four of them at once; each request has a time budget (`timeout`), past
 * which its calls are stopped and it answers 504. The run gets the request's
 * `signal`: a client that goes away cancels the run, and every backend call
 * still in flight is aborted — nothing keeps working for a client that left.
 *
 * The backend is simulated (a timer per call, stopped by its `AbortSignal`,
 * as `fetch(url, { signal })` would be); `&latency=ms` sets how slow it is.
 *
 * Run it, then open http://localhost:8000/dashboard?user=ada:
 *
 * ```sh
 * deno run --allow-net examples/server.ts            # 0.0.0.0:8000
 * deno run --allow-net examples/server.ts 0 127.0.0.1 # a free port, on 127.0.0.1
 * ```
 *
 * On Deno Deploy, `Deno.serve(handler)` is all it takes; tests start it on
 * 127.0.0.1, port 0, with {@linkcode startServer}.
 *
 * About `request.signal`: Deno 2.9 by default also aborts it once a response
 * has been sent (the "legacy abort", with a warning); this repository's
 * deno.json opts in to the corrected behaviour (`"unstable":
 * ["no-legacy-abort"]`), where it aborts only when the client goes away.
 * Either way is safe here: by the time a response is sent, its run is over.
 *
 * @module
 */
import {
  all,
  CancelledError,
  type Coro,
  fromPromise,
  Semaphore,
  timeout,
  toPromise,
} from "../mod.ts";

/** What the server has seen: what the tests check, and what `/stats` shows. */
export interface ServerStats {
  /** Requests whose run started. */
  started: number;
  /** Runs still going. */
  running: number;
  /** Requests answered 200. */
  ok: number;
  /** Requests answered 504: over their time budget. */
  timedOut: number;
  /** Runs cancelled because their client went away. */
  cancelled: number;
  /** Backend calls started. */
  backendCalls: number;
  /** Backend calls stopped by their signal (timed out or cancelled) before they answered. */
  backendAborted: number;
  /** Backend calls in flight now, and the most ever in flight at once. */
  backendInFlight: number;
  backendMostInFlight: number;
}

/** Options of {@linkcode startServer}. */
export interface ServerOptions {
  /** Default `"0.0.0.0"`, as `Deno.serve`. */
  hostname?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Time budget of one request, in milliseconds (default 1 000). */
  timeoutMs?: number;
  /** Backend calls in flight at once, across all requests (default 4). */
  maxBackendCalls?: number;
  /** Called once listening (default: prints the address). */
  onListen?: (addr: Deno.NetAddr) => void;
}

/** A running server. */
export interface DashboardServer {
  /** Its base URL, such as `http://127.0.0.1:41234`. */
  url: string;
  stats: ServerStats;
  /** Stops accepting connections and waits for the requests in flight. */
  shutdown(): Promise<void>;
}

interface Dashboard {
  user: string;
  profile: string;
  orders: number;
  recommendations: string[];
  notifications: number;
  ms: number;
}

/** Makes the request handler: a `Deno.serve` handler with its own stats and semaphore. */
export function makeHandler(
  options: Pick<ServerOptions, "timeoutMs" | "maxBackendCalls"> = {},
): { handler: (request: Request) => Promise<Response>; stats: ServerStats } {
  const timeoutMs = options.timeoutMs ?? 1_000;
  const backendSlots = new Semaphore(options.maxBackendCalls ?? 4);
  const stats: ServerStats = {
    started: 0,
    running: 0,
    ok: 0,
    timedOut: 0,
    cancelled: 0,
    backendCalls: 0,
    backendAborted: 0,
    backendInFlight: 0,
    backendMostInFlight: 0,
  };

  /** The simulated backend: answers after `latency` ms, unless its signal aborts first. */
  function backend<T>(answer: T, latency: number, signal: AbortSignal): Promise<T> {
    stats.backendCalls++;
    stats.backendInFlight++;
    stats.backendMostInFlight = Math.max(stats.backendMostInFlight, stats.backendInFlight);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        stats.backendInFlight--;
        resolve(answer);
      }, latency);
      function onAbort() {
        clearTimeout(timer);
        stats.backendInFlight--;
        stats.backendAborted++;
        reject(signal.reason);
      }
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** One backend call, holding one of the shared slots while it runs. */
  function* call<T>(answer: T, latency: number): Coro<T> {
    using _slot = yield* backendSlots.acquire();
    return yield* fromPromise((signal) => backend(answer, latency, signal));
  }

  function* dashboard(user: string, latency: number): Coro<Dashboard> {
    const t0 = performance.now();
    stats.running++;
    try {
      const [profile, orders, recommendations, notifications] = yield* all([
        call(`${user} (member since 2019)`, latency),
        call(user.length * 3, latency),
        call(["tinyio", "trio", "deno"], latency * 1.5),
        call(2, latency / 2),
      ]);
      const ms = Math.round(performance.now() - t0);
      return { user, profile, orders, recommendations, notifications, ms };
    } catch (error) {
      // The client went away: the run cancels this coroutine (and the backend
      // calls it waits on), so that no work goes on for nobody.
      if (error instanceof CancelledError) stats.cancelled++;
      throw error;
    } finally {
      stats.running--;
    }
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/stats") return Response.json(stats);
    if (url.pathname !== "/dashboard") {
      return new Response("try /dashboard?user=ada (&latency=ms) or /stats\n", { status: 404 });
    }
    const user = url.searchParams.get("user");
    const latency = Number(url.searchParams.get("latency") ?? 50);
    if (!user || !(latency >= 0 && latency <= 60_000)) {
      return new Response("give ?user=name, and &latency= between 0 and 60000 ms\n", {
        status: 400,
      });
    }
    stats.started++;
    try {
      const [result, inTime] = await toPromise(timeout(dashboard(user, latency), timeoutMs), {
        signal: request.signal,
      });
      if (!inTime) {
        stats.timedOut++;
        return Response.json({ error: `over the ${timeoutMs} ms budget` }, { status: 504 });
      }
      stats.ok++;
      return Response.json(result);
    } catch (error) {
      // Nobody is listening any more; answer something all the same.
      if (request.signal.aborted) return new Response(null, { status: 499 });
      throw error;
    }
  }

  return { handler, stats };
}

/** Starts the server on `hostname` and `port` (0: a free port) and returns it once listening. */
export async function startServer(options: ServerOptions = {}): Promise<DashboardServer> {
  const { handler, stats } = makeHandler(options);
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen: (addr) => {
      (options.onListen ?? defaultOnListen)(addr);
      listening.resolve(addr);
    },
  }, handler);
  const addr = await listening.promise;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return { url: `http://${host}:${addr.port}`, stats, shutdown: () => server.shutdown() };
}

function defaultOnListen(addr: Deno.NetAddr): void {
  const host = addr.hostname === "0.0.0.0" ? "localhost" : addr.hostname;
  console.log(`Listening on http://${host}:${addr.port}/dashboard?user=ada`);
}

if (import.meta.main) {
  const [port = "8000", hostname = "0.0.0.0"] = Deno.args;
  await startServer({ hostname, port: Number(port) });
}
