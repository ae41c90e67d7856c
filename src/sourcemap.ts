/**
 * A source map decoder (version 3, the format every compiler writes): from a
 * position in generated JavaScript back to the source as written. Only
 * inspection uses it (src/inspect.ts), to turn the positions V8 reports for
 * a `.ts` file into TypeScript lines; no dependency, a few dozen lines.
 *
 * @module
 */

/** A position in a source file: its URL, and its line and column, from 0. */
export interface SourcePosition {
  readonly url: string;
  readonly line: number;
  readonly column: number;
}

// The value of each base64 digit, or -1.
const DIGITS = new Int8Array(128).fill(-1);
[..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"]
  .forEach((c, i) => DIGITS[c.charCodeAt(0)] = i);

/** The decoded mappings of one generated file. */
export class SourceMap {
  readonly #sources: string[];
  // Per generated line, its segments as runs of four numbers: generated
  // column, source index (-1: the segment maps to nothing), original line,
  // original column; in column order.
  readonly #lines: Int32Array[] = [];

  /**
   * Decodes `map` (the parsed JSON). `base` is the URL its `sources` are
   * relative to: the map's own URL, or for an inline map the script's.
   * Throws a SyntaxError if the mappings are malformed.
   */
  constructor(
    map: { sources?: unknown; sourceRoot?: unknown; mappings?: unknown },
    base: string,
  ) {
    const root = typeof map.sourceRoot === "string" && map.sourceRoot !== ""
      ? new URL(map.sourceRoot.endsWith("/") ? map.sourceRoot : map.sourceRoot + "/", base).href
      : base;
    const sources = Array.isArray(map.sources) ? map.sources : [];
    this.#sources = sources.map((s) => new URL(String(s), root).href);
    if (typeof map.mappings !== "string") throw new SyntaxError("source map without mappings");
    this.#decode(map.mappings);
  }

  /** The source position that generated `line` and `column` (from 0) come from, if mapped. */
  lookup(line: number, column: number): SourcePosition | undefined {
    const segments = this.#lines[line];
    if (segments === undefined || segments.length === 0) return undefined;
    // The last segment starting at or before `column`.
    let lo = 0;
    let hi = segments.length / 4 - 1;
    if (segments[0] > column) return undefined;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segments[mid * 4] <= column) lo = mid;
      else hi = mid - 1;
    }
    const source = segments[lo * 4 + 1];
    if (source < 0 || source >= this.#sources.length) return undefined;
    return { url: this.#sources[source], line: segments[lo * 4 + 2], column: segments[lo * 4 + 3] };
  }

  // The mappings: lines separated by ";", segments by ",", each segment 1, 4
  // or 5 base64 VLQ numbers, every one relative to the same field of the
  // segment before (the generated column only within its line).
  #decode(mappings: string): void {
    let source = 0;
    let originalLine = 0;
    let originalColumn = 0;
    let line: number[] = [];
    let column = 0;
    const fields: number[] = [];
    let i = 0;
    const n = mappings.length;
    while (i <= n) {
      const c = i < n ? mappings.charCodeAt(i) : 59; // the end closes the last line
      if (c === 59 /* ; */ || c === 44 /* , */) {
        if (fields.length > 0) {
          column += fields[0];
          if (fields.length >= 4) {
            source += fields[1];
            originalLine += fields[2];
            originalColumn += fields[3];
            line.push(column, source, originalLine, originalColumn);
          } else {
            line.push(column, -1, 0, 0);
          }
          fields.length = 0;
        }
        if (c === 59) {
          this.#lines.push(sortedSegments(line));
          line = [];
          column = 0;
        }
        i++;
        continue;
      }
      // One VLQ number: 5 bits a digit, low bits first; bit 6 says "more
      // digits follow"; the lowest bit of the result is the sign.
      let value = 0;
      let shift = 0;
      let digit: number;
      do {
        const code = i < n ? mappings.charCodeAt(i++) : -1;
        digit = code >= 0 && code < 128 ? DIGITS[code] : -1;
        if (digit < 0) throw new SyntaxError(`bad character in source map mappings at ${i - 1}`);
        value += (digit & 31) * 2 ** shift;
        shift += 5;
      } while (digit & 32);
      fields.push(value % 2 === 1 ? -(value - 1) / 2 : value / 2);
    }
  }
}

/** The segments of a line as an Int32Array, sorted by generated column (compilers nearly always write them so). */
function sortedSegments(line: number[]): Int32Array {
  let sorted = true;
  for (let k = 4; k < line.length; k += 4) if (line[k] < line[k - 4]) sorted = false;
  if (sorted) return Int32Array.from(line);
  const quads: number[][] = [];
  for (let k = 0; k < line.length; k += 4) quads.push(line.slice(k, k + 4));
  quads.sort((a, b) => a[0] - b[0]);
  return Int32Array.from(quads.flat());
}
