/**
 * Where suspended generators are: their functions' names and the positions
 * of their `yield`s, read from V8's inspector (`node:inspector`), in the
 * source as written. Snapshots, stitched traces and cycle errors use it
 * (src/snapshot.ts, src/trace.ts); nothing else does, and nothing here runs
 * until one of them asks.
 *
 * The inspector is the only way: a generator object tells JavaScript nothing
 * about itself, but `Runtime.getProperties` of it lists `[[GeneratorFunction]]`
 * and `[[GeneratorLocation]]` (script, line and column of the suspended
 * `yield`). In Deno the inspector needs the whole `--allow-sys` permission,
 * queried first so that nothing ever prompts; Node needs none (unless its
 * permission model is on); elsewhere (Bun, browsers, workerd) it is not used.
 * A session is opened for each reading and closed after.
 *
 * V8 reports positions in the JavaScript it runs. For a `.ts` file that is
 * Deno's emit, and Deno hands V8 its source map only under `--inspect`; the
 * map is in Deno's cache instead, `DENO_DIR/gen/file/<path>.js`, after the
 * emitted code (finding it takes `--allow-env` for the cache's location and
 * `--allow-read` for the file). The cached code is used only if it is the
 * very code V8 runs (same length, same SHA-256 as V8's script hash);
 * otherwise, as for any `.ts` file it cannot map, the location is absent
 * rather than wrong. Node's type stripping keeps positions, so a `.ts` file
 * there needs no map; a `.js` file needs none anywhere.
 *
 * @module
 */

import { SourceMap } from "./sourcemap.ts";

/** What the inspector tells of one generator; a field it cannot tell is absent. */
export interface Position {
  /** Its generator function's name (absent if anonymous). */
  name?: string;
  /** Where it is suspended: `url:line:column`, counted from 1 as in stack traces. */
  location?: string;
  /** The URL of the script it is suspended in, even when the position cannot be mapped. */
  script?: string;
}

// The few runtime APIs used here, typed structurally (no Deno or Node types
// leak into the module's public types).
interface DenoApi {
  permissions: {
    querySync(d: { name: string; variable?: string; path?: string }): { state: string };
  };
  env: { get(name: string): string | undefined };
  build: { os: string };
  readTextFile(path: string): Promise<string>;
}
interface NodeProcess {
  versions?: { node?: string; bun?: string };
  permission?: unknown;
  features?: { typescript?: unknown };
}
const deno = (globalThis as { Deno?: DenoApi }).Deno;
const nodeProcess = deno === undefined
  ? (globalThis as { process?: NodeProcess }).process
  : undefined;

/**
 * True if the inspector may be used now, without a prompt: in Deno with
 * `--allow-sys` (queried each time: a permission can be revoked), on Node
 * without its permission model. False elsewhere.
 */
export function inspectorAllowed(): boolean {
  if (deno !== undefined) {
    try {
      return deno.permissions.querySync({ name: "sys" }).state === "granted";
    } catch {
      return false;
    }
  }
  const versions = nodeProcess?.versions;
  return typeof versions?.node === "string" && versions.bun === undefined &&
    nodeProcess?.permission === undefined;
}

// What one inspector request answers, as far as it is read here.
interface RemoteObject {
  type?: string;
  objectId?: string;
  value?: unknown;
}
interface PropertyDescriptor {
  name: string;
  value?: RemoteObject;
}
interface Properties {
  result: PropertyDescriptor[];
  internalProperties?: PropertyDescriptor[];
}
interface Session {
  connect(): void;
  disconnect(): void;
  post(method: string, params: object, callback: (error: unknown, result: unknown) => void): void;
  on(event: string, listener: (message: { params: ScriptParsed }) => void): void;
}
interface ScriptParsed {
  scriptId: string;
  url: string;
  sourceMapURL?: string;
  hash?: string;
  length?: number;
}

/** What is known of a script: V8 never reuses a script id within a process, so this is kept. */
const scripts = new Map<string, ScriptParsed>();
/** How each script's positions map to its source as written (null: they cannot be), once worked out. */
const mappers = new Map<string, Promise<Mapper | null>>();
type Mapper = (line: number, column: number) => string | undefined;

let inspectorModule: Promise<{ Session: new () => Session }> | undefined;
// Named through a variable, so that a bundler for a browser does not try to
// resolve it: it is imported only where `inspectorAllowed()` says it exists.
const INSPECTOR = "node:inspector";

/**
 * Where the generators are handed to the inspector, for as long as one
 * evaluation takes: under a number per reading, since readings may overlap
 * (two loops failing at once).
 */
const HANDOFF = Symbol.for("tinyio.inspect");
let readings = 0;

/**
 * Reads the name and location of each generator of `gens` (suspended or
 * not; a closed one has neither). Call only if {@linkcode inspectorAllowed}.
 * Never rejects: what it cannot read is absent.
 */
export async function readPositions(gens: readonly object[]): Promise<Position[]> {
  const out: Position[] = gens.map(() => ({}));
  if (gens.length === 0) return out;
  const found: { state: string; scriptId: string; line: number; column: number }[] = [];
  let session: Session | undefined;
  try {
    inspectorModule ??= import(INSPECTOR) as Promise<{ Session: new () => Session }>;
    const { Session } = await inspectorModule;
    session = new Session();
    session.connect();
    const post = postOf(session);
    // The inspector names objects by ids it gives out: hand it the generators
    // through a global for the length of one evaluation.
    const global = globalThis as { [HANDOFF]?: Record<number, readonly object[]> };
    const handoff = global[HANDOFF] ??= {};
    const reading = ++readings;
    handoff[reading] = gens;
    let array: RemoteObject;
    try {
      array = ((await post("Runtime.evaluate", {
        expression: `globalThis[Symbol.for("tinyio.inspect")][${reading}]`,
      })) as { result: RemoteObject }).result;
    } finally {
      delete handoff[reading];
      if (Object.keys(handoff).length === 0) delete global[HANDOFF];
    }
    const elements = (await post("Runtime.getProperties", {
      objectId: array.objectId,
      ownProperties: true,
    })) as Properties;
    const ids: string[] = [];
    for (const p of elements.result) {
      const i = Number(p.name);
      if (Number.isInteger(i) && i >= 0 && p.value?.objectId !== undefined) {
        ids[i] = p.value.objectId;
      }
    }
    // All sent at once (the loop waits meanwhile): about 35 µs a generator.
    const internals = await Promise.all(
      gens.map((_, i) =>
        ids[i] === undefined
          ? undefined
          : post("Runtime.getProperties", { objectId: ids[i], ownProperties: true }) as Promise<
            Properties
          >
      ),
    );
    const functions: string[] = [];
    const functionOf: number[] = [];
    internals.forEach((props, i) => {
      const get = (name: string) => props?.internalProperties?.find((p) => p.name === name)?.value;
      const fn = get("[[GeneratorFunction]]")?.objectId;
      if (fn !== undefined) {
        functionOf[i] = functions.length;
        functions.push(fn);
      }
      const state = get("[[GeneratorState]]")?.value;
      const at = get("[[GeneratorLocation]]")?.value as
        | { scriptId: string; lineNumber: number; columnNumber: number }
        | undefined;
      if (typeof state === "string" && at !== undefined) {
        found[i] = { state, scriptId: at.scriptId, line: at.lineNumber, column: at.columnNumber };
      }
    });
    // The functions' names in one call: `name` is what the code says (a
    // method's, a `const f = function* () {}`'s), which their source text is not.
    if (functions.length > 0) {
      const names = ((await post("Runtime.callFunctionOn", {
        objectId: functions[0],
        functionDeclaration: "function (...fs) { return fs.map((f) => String(f.name)); }",
        arguments: functions.map((objectId) => ({ objectId })),
        returnByValue: true,
      })) as { result: { value?: unknown } }).result.value;
      if (Array.isArray(names)) {
        gens.forEach((_, i) => {
          const name = functionOf[i] === undefined ? undefined : names[functionOf[i]];
          if (typeof name === "string" && name !== "") out[i].name = name;
        });
      }
    }
    // Script ids become URLs through the Debugger domain, which lists every
    // script when enabled (milliseconds): only when a script is new.
    if (found.some((f) => f !== undefined && !scripts.has(f.scriptId))) {
      session.on(
        "Debugger.scriptParsed",
        ({ params: { scriptId, url, sourceMapURL, hash, length } }) => {
          scripts.set(scriptId, { scriptId, url, sourceMapURL, hash, length });
        },
      );
      await post("Debugger.enable", {});
      // Never stop at a `debugger` statement while enabled: in-process, a
      // paused thread could not resume itself.
      await post("Debugger.setSkipAllPauses", { skip: true });
      await post("Debugger.disable", {});
    }
    // (Closing the session releases the objects it was handed.)
  } catch {
    // No inspector here after all, or it failed: what was read stands.
  } finally {
    try {
      session?.disconnect();
    } catch {
      // already closed
    }
  }
  // Mapped after the session has closed: this reads files.
  await Promise.all(found.map(async (f, i) => {
    if (f === undefined || f.state === "closed") return; // a closed generator reports its start
    const script = scripts.get(f.scriptId);
    if (script === undefined || script.url === "") return;
    out[i].script = script.url;
    const mapper = await mapperOf(script);
    const location = mapper?.(f.line, f.column);
    if (location !== undefined) out[i].location = location;
  }));
  return out;
}

function postOf(session: Session): (method: string, params: object) => Promise<unknown> {
  return (method, params) =>
    new Promise((resolve, reject) =>
      session.post(method, params, (error, result) => error ? reject(error) : resolve(result))
    );
}

/** How positions of `script` become locations in its source as written, or null if they cannot. */
function mapperOf(script: ScriptParsed): Promise<Mapper | null> {
  let mapper = mappers.get(script.scriptId);
  if (mapper === undefined) {
    mapper = findMapper(script).catch(() => null);
    mappers.set(script.scriptId, mapper);
  }
  return mapper;
}

async function findMapper(script: ScriptParsed): Promise<Mapper | null> {
  const url = script.url;
  const inline = script.sourceMapURL ?? "";
  if (inline.startsWith("data:")) return viaMap(dataUrlJson(inline), url);
  if (!needsMap(url)) return asIs(url);
  if (nodeProcess?.features?.typescript === "strip") return asIs(url); // Node keeps positions
  if (deno === undefined || !url.startsWith("file:")) return null;
  const cached = await denoEmit(url);
  if (cached === undefined) return null;
  // The emitted code, then `//# sourceMappingURL=data:…` and Deno's metadata.
  const at = cached.lastIndexOf("\n//# sourceMappingURL=data:");
  if (at < 0) return null;
  const code = cached.slice(0, at + 1);
  if (code.length !== script.length || script.hash !== await sha256(code)) return null;
  const dataUrl = cached.slice(at + "\n//# sourceMappingURL=".length).split("\n", 1)[0].trim();
  return viaMap(dataUrlJson(dataUrl), url);
}

/** The JSON in a `data:` URL (base64 or percent-encoded). */
function dataUrlJson(url: string): unknown {
  const comma = url.indexOf(",");
  const body = url.slice(comma + 1);
  if (!/;base64$/i.test(url.slice(0, comma))) return JSON.parse(decodeURIComponent(body));
  const bytes = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** True for a file that runs as something other than itself (TypeScript, JSX). */
function needsMap(url: string): boolean {
  const path = url.split(/[?#]/, 1)[0];
  return !/\.(js|mjs|cjs)$/.test(path) && /\.[a-z]+$/.test(path);
}

function asIs(url: string): Mapper {
  return (line, column) => `${url}:${line + 1}:${column + 1}`;
}

function viaMap(json: unknown, url: string): Mapper {
  const map = new SourceMap(json as Record<string, unknown>, url);
  return (line, column) => {
    const p = map.lookup(line, column);
    return p === undefined ? undefined : `${p.url}:${p.line + 1}:${p.column + 1}`;
  };
}

/**
 * Deno's cached emit of the `file:` module at `url`, if the permissions let
 * it be found and read (queried, never prompted).
 */
async function denoEmit(url: string): Promise<string | undefined> {
  const d = deno!;
  const env = (name: string) =>
    d.permissions.querySync({ name: "env", variable: name }).state === "granted"
      ? d.env.get(name)
      : undefined;
  const windows = d.build.os === "windows";
  const sep = windows ? "\\" : "/";
  let dir = env("DENO_DIR"); // if relative, it is to the working directory, as file paths are
  if (dir === undefined || dir === "") {
    // Deno's default cache directory, by platform.
    const home = env(windows ? "USERPROFILE" : "HOME");
    if (windows) {
      const local = env("LOCALAPPDATA");
      dir = local === undefined ? undefined : `${local}\\deno`;
    } else if (d.build.os === "darwin") {
      dir = home === undefined ? undefined : `${home}/Library/Caches/deno`;
    } else {
      const xdg = env("XDG_CACHE_HOME");
      dir = xdg !== undefined && xdg !== "" ? `${xdg}/deno` : home && `${home}/.cache/deno`;
    }
  }
  if (dir === undefined) return undefined;
  // file:///home/x/a.ts → gen/file/home/x/a.ts.js; file:///C:/x/a.ts → gen/file/C/x/a.ts.js
  let path = decodeURIComponent(new URL(url).pathname);
  if (windows) path = path.replace(/^\/([A-Za-z]):/, "/$1").replaceAll("/", "\\");
  const file = `${dir}${sep}gen${sep}file${path}.js`;
  if (d.permissions.querySync({ name: "read", path: file }).state !== "granted") return undefined;
  try {
    return await d.readTextFile(file);
  } catch {
    return undefined;
  }
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
