/**
 * Errors crossing from the workers, on the loop's side: rebuilt from the
 * records a worker sends (worker.ts makes them), with a hint where the
 * cause is one that threads are known for; and the error of a call that
 * could not be sent.
 *
 * @module
 */

import { describe } from "../messages.ts";
import type { Call } from "./call.ts";
import type { ErrorRecord } from "./protocol.ts";

const ERROR_CLASSES: Record<string, new (message: string, options?: ErrorOptions) => Error> = {
  Error,
  TypeError,
  RangeError,
  ReferenceError,
  SyntaxError,
  EvalError,
  URIError,
};

/** The worker's error, rebuilt here with its name, message and stack. */
export function rebuild(r: ErrorRecord): unknown {
  if ("thrown" in r) return r.thrown; // not an Error: passed through as it is
  const name = r.name ?? "Error";
  const denoErrors = (globalThis as { Deno?: { errors?: Record<string, unknown> } }).Deno?.errors;
  const denoClass = Object.hasOwn(denoErrors ?? {}, name) ? denoErrors![name] : undefined;
  const Class = Object.hasOwn(ERROR_CLASSES, name)
    ? ERROR_CLASSES[name]
    : typeof denoClass === "function"
    ? denoClass as (typeof ERROR_CLASSES)[string]
    : Error;
  const options = r.cause === undefined ? undefined : { cause: rebuild(r.cause) };
  const error = new Class(r.message ?? "", options);
  if (error.name !== name) error.name = name;
  if (r.stack) error.stack = r.stack;
  if (r.props !== undefined) Object.assign(error, r.props);
  return error;
}

/** The error a call failed with on its worker, rebuilt, with a hint where one helps. */
export function threadError(call: Call, r: ErrorRecord): unknown {
  const error = rebuild(r);
  if (!(error instanceof Error)) return error;
  const hint = sourceHint(call, error) ?? argumentHint(call, error);
  if (hint !== undefined) {
    const old = `${error.name}: ${error.message}`;
    const stack = String(error.stack ?? ""); // its first line is the old message
    error.message += hint;
    if (stack.startsWith(old)) {
      error.stack = `${error.name}: ${error.message}${stack.slice(old.length)}`;
    }
  }
  return error;
}

/** A function sent by its source text lost its enclosing scope and its `this`. */
function sourceHint(call: Call, error: Error): string | undefined {
  const target = call.target;
  if (!("source" in target)) return undefined;
  if (error instanceof ReferenceError) {
    const name = /^(\S+) is not defined/.exec(error.message)?.[1];
    if (name === undefined) return undefined;
    return `: runInThread sends a function to the worker by its source text, so ` +
      `it cannot use variables of its enclosing scope (here \`${name}\`), only its arguments, ` +
      "globals and `cancelled`. Pass the value as an argument, or export the function from " +
      'a module and run threadFunction(new URL("./tasks.ts", import.meta.url), "name").';
  }
  // V8: "Cannot read properties of undefined (reading 'k')"; JavaScriptCore:
  // "undefined is not an object (evaluating 'this.k')".
  if (
    error instanceof TypeError && /\bundefined\b/.test(error.message) &&
    /\bthis\b/.test(target.source)
  ) {
    return ": the function uses `this`, but runInThread sends a function to the worker by its " +
      "source text, where `this` is undefined (a method does not take its object along). " +
      "Pass what it needs as arguments, or export the function from a module and run " +
      'threadFunction(new URL("./tasks.ts", import.meta.url), "name").';
  }
  return undefined;
}

/**
 * "p.double is not a function" where an argument is an instance of a class
 * of the user's with that method: structured cloning dropped its prototype.
 */
function argumentHint(call: Call, error: Error): string | undefined {
  if (!(error instanceof TypeError)) return undefined;
  const method = /([\w$]+) is not a function/.exec(error.message)?.[1];
  if (method === undefined) return undefined;
  const args = call.args;
  for (let i = 0; i < args.length; i++) {
    const instance = instanceWith(args[i], method);
    if (instance === undefined) continue;
    const className = Object.getPrototypeOf(instance).constructor.name || "a class";
    const what = instance === args[i] ? `argument ${i + 1}` : `an object in argument ${i + 1}`;
    return `: ${what} is a ${className}, and \`${method}\` is a method of its class, which ` +
      "does not reach the worker: arguments are structured-cloned, which keeps an object's " +
      "own data but not its prototype. Pass plain data and rebuild the instance in the worker " +
      `(\`new ${className}(…)\` in a threadFunction module that imports ${className}), or ` +
      `call \`${method}\` before sending and pass its result.`;
  }
  return undefined;
}

/** `x`, or an element or value of it (one level down), that is an instance of a user's class with `method`. */
function instanceWith(x: unknown, method: string): object | undefined {
  if (hasClassMethod(x, method)) return x as object;
  if (typeof x !== "object" || x === null) return undefined;
  const proto = Object.getPrototypeOf(x);
  if (!Array.isArray(x) && proto !== Object.prototype && proto !== null) return undefined;
  let looked = 0;
  for (const value of Object.values(x)) {
    if (hasClassMethod(value, method)) return value as object;
    if (++looked === 100) break;
  }
  return undefined;
}

function hasClassMethod(x: unknown, method: string): boolean {
  if (typeof x !== "object" || x === null || Object.hasOwn(x, method)) return false;
  const constructor = Object.getPrototypeOf(x)?.constructor;
  // A class of the user's (structured cloning keeps built-ins such as Map and Date whole).
  return typeof constructor === "function" && constructor !== Object &&
    !/\{\s*\[native code\]\s*\}$/.test(Function.prototype.toString.call(constructor)) &&
    typeof (x as Record<string, unknown>)[method] === "function";
}

/** A postMessage of the call failed: name the argument that cannot be cloned. */
export function unsentError(call: Call, error: unknown): unknown {
  if (!(error instanceof DOMException) || error.name !== "DataCloneError") return error;
  const args = call.args;
  for (let i = 0; i < args.length; i++) {
    try {
      structuredClone(args[i]);
    } catch (e) {
      return new TypeError(
        `${call.label}: argument ${i + 1} (${describe(args[i])}) cannot be sent to a worker: ${
          (e as Error).message.replace(/\.+$/, "")
        }. Arguments and results are structured-cloned: pass plain data (no functions, ` +
          "symbols or class behaviour).",
      );
    }
  }
  return new TypeError(`${call.label}: the arguments cannot be sent to a worker: ${error.message}`);
}
