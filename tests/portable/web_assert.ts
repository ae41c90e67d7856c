/**
 * `node:assert/strict` for runtimes without Node's modules (browsers, workerd
 * before `nodejs_compat`): npm's `assert`, a port of Node's own, in its strict
 * mode, so the portable tests keep their exact assertions there.
 *
 * @module
 */
import assert from "assert";

/** Node's `assert.strict`. */
const strict: typeof assert.strict = assert.strict;
export default strict;
