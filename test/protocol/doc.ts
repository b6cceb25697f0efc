/**
 * Reads the test vectors out of docs/protocol.md (and docs/paillier.md: pass its text), so that tests check
 * the document itself.
 *
 * A vector is a fenced block whose info string is `<kind> name=<name>`, e.g. ```` ```hex name=frame.cbor ````.
 * Kinds used: `hex` (whitespace ignored), `cbor-diag` (RFC 8949 §8 diagnostic notation, the subset of JSON
 * plus `h'…'` byte strings), `pem`, `sh`, `js`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const PROTOCOL_MD = fileURLToPath(new URL('../../docs/protocol.md', import.meta.url));
export const PAILLIER_MD = fileURLToPath(new URL('../../docs/paillier.md', import.meta.url));

export interface DocBlock {
  kind: string;
  name: string;
  text: string;
  line: number;
}

/** Every named fenced block of the document, in order. Throws on two different blocks with one name and kind. */
export function docBlocks(markdown = readFileSync(PROTOCOL_MD, 'utf8'), file = 'docs/protocol.md'): DocBlock[] {
  const out: DocBlock[] = [];
  const re = /^([ \t]*)```([\w-]+) name=(\S+)[ \t]*\n([\s\S]*?)^[ \t]*```[ \t]*$/gm;
  for (const m of markdown.matchAll(re)) {
    const indent = m[1]!.length;
    const text = m[4]!
      .split('\n')
      .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
      .join('\n');
    const line = markdown.slice(0, m.index).split('\n').length;
    const block = { kind: m[2]!, name: m[3]!, text, line };
    const twin = out.find((b) => b.kind === block.kind && b.name === block.name);
    if (twin && twin.text.trim() !== block.text.trim()) {
      throw new Error(`${file}:${line}: ${block.kind} block "${block.name}" differs from the one at line ${twin.line}`);
    }
    if (!twin) out.push(block);
  }
  return out;
}

/** The text of one named block of the given kind; throws if the document lacks it. */
export function docBlock(kind: string, name: string, blocks = docBlocks()): string {
  const b = blocks.find((x) => x.kind === kind && x.name === name);
  if (!b) throw new Error(`the document has no \`\`\`${kind} name=${name} block`);
  return b.text;
}

/** The bytes of a `hex` block. */
export function docHex(name: string, blocks = docBlocks()): Buffer {
  const text = docBlock('hex', name, blocks).replace(/\s+/g, '');
  if (!/^([0-9a-f]{2})*$/.test(text)) throw new Error(`hex block "${name}" is not lower-case hex of whole bytes`);
  return Buffer.from(text, 'hex');
}

/**
 * Parses CBOR diagnostic notation limited to what the document uses: unsigned/negative integers, text in
 * double quotes, `h'…'` byte strings, arrays, maps with text keys. Byte strings become Buffers.
 */
export function parseDiag(text: string): unknown {
  const BYTES = '\u0000bytes:';
  const json = text.replace(/h'([0-9a-f]*)'/g, (_m, h: string) => JSON.stringify(BYTES + h));
  const revive = (v: unknown): unknown => {
    if (typeof v === 'string' && v.startsWith(BYTES)) return Buffer.from(v.slice(BYTES.length), 'hex'); // as cbor-x decodes byte strings in Node
    if (Array.isArray(v)) return v.map(revive);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)]));
    return v;
  };
  return revive(JSON.parse(json));
}
