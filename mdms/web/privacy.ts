/**
 * What the Privacy page shows besides the store's own figures: the privacy report that `smartermeter
 * privacy-report --out DIR` wrote (DIR/summary.json read and checked here, DIR/report.html served as is), the
 * names of the PES's guard counters in words, and the mismatches between what the PES and the MDMS enforce.
 *
 * summary.json is a file from outside the MDMS: it is read with a size limit and checked field by field; a file
 * that is missing, too large or not the expected shape gives a clear error (shown on the page and counted),
 * never an exception. Attack kinds this MDMS does not know are skipped, so a newer report still shows.
 * @module
 */
import { open, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { IngestPolicyRow, PolicyRow } from '../store/types.js';

/** Largest summary.json read (the real ones are a few KiB; per-household detail grows with the fleet). */
export const MAX_SUMMARY_BYTES = 4 * 1024 * 1024;
/** Largest report.html served. */
export const MAX_REPORT_BYTES = 32 * 1024 * 1024;

/** One attack's score against its baseline. */
export interface AttackFigure {
  attack: 'events' | 'occupancy';
  data: 'raw' | 'released';
  /** F1 (events) or accuracy (occupancy). */
  score: number;
  /** The same score by chance. */
  chance: number;
}

/** The differencing attack with or without the membership guard. */
export interface DifferencingFigure {
  guard: boolean;
  maeWh: number;
  baselineMaeWh: number;
  intervals: number;
  membershipHeld: number;
}

/** One point of the DP sweep. */
export interface DpFigure {
  epsilon: number;
  aggregateMape: number;
  eventsF1: number;
}

/** The figures of summary.json the Privacy page shows. */
export interface ReportFigures {
  households: number;
  attacks: AttackFigure[];
  differencing: DifferencingFigure[];
  dp: DpFigure[];
  dataFrom: string | null;
  dataTo: string | null;
}

/** The privacy report of a `--privacy-report` directory, or why it cannot be shown. */
export type PrivacyReport =
  | { ok: true; figures: ReportFigures; html: boolean; writtenAtMs: number }
  | { ok: false; error: string; html: boolean };

class ShapeError extends Error {}

const obj = (v: unknown, where: string): Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ShapeError(`${where} is not an object`);
  return v as Record<string, unknown>;
};
const num = (o: Record<string, unknown>, k: string, where: string): number => {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ShapeError(`${where} lacks a numeric ${k}`);
  return v;
};
const optText = (o: Record<string, unknown>, k: string): string | null => (typeof o[k] === 'string' ? (o[k] as string).slice(0, 40) : null);

/**
 * Checks a parsed summary.json and picks the figures the page shows; throws an `Error` naming the first field
 * that is not as `smartermeter privacy-report` writes it.
 * @example
 * ```ts
 * reportFigures(JSON.parse(readFileSync('report/summary.json', 'utf8'))).attacks[0]; // { attack: 'events', data: 'raw', score: 0.81, chance: 0.05 }
 * ```
 */
export function reportFigures(json: unknown): ReportFigures {
  const s = obj(json, 'summary.json');
  const households = num(s, 'households', 'summary.json');
  if (!Number.isSafeInteger(households) || households < 0) throw new ShapeError('summary.json households must be a count');
  if (!Array.isArray(s.attacks)) throw new ShapeError('summary.json lacks its attacks list');
  const attacks: AttackFigure[] = [];
  const differencing: DifferencingFigure[] = [];
  s.attacks.forEach((raw, i) => {
    const where = `summary.json attacks[${i}]`;
    const a = obj(raw, where);
    if (a.attack === 'events' || a.attack === 'occupancy') {
      if (a.data !== 'raw' && a.data !== 'released') throw new ShapeError(`${where} data must be raw or released`);
      const [score, chance] = a.attack === 'events' ? [num(a, 'f1', where), num(a, 'chance_f1', where)] : [num(a, 'accuracy', where), num(a, 'chance', where)];
      attacks.push({ attack: a.attack, data: a.data, score, chance });
    } else if (a.attack === 'differencing') {
      if (typeof a.guard !== 'boolean') throw new ShapeError(`${where} guard must be true or false`);
      differencing.push({ guard: a.guard, maeWh: num(a, 'mae_wh', where), baselineMaeWh: num(a, 'baseline_mae_wh', where), intervals: num(a, 'intervals', where), membershipHeld: num(a, 'membership_held', where) });
    }
  });
  const dp = (Array.isArray(s.dp) ? s.dp : []).map((raw, i): DpFigure => {
    const where = `summary.json dp[${i}]`;
    const d = obj(raw, where);
    return { epsilon: num(d, 'epsilon', where), aggregateMape: num(d, 'aggregate_mape', where), eventsF1: num(d, 'events_f1', where) };
  });
  const method = typeof s.method === 'object' && s.method !== null ? (s.method as Record<string, unknown>) : {};
  return { households, attacks, differencing, dp, dataFrom: optText(method, 'data_from'), dataTo: optText(method, 'data_to') };
}

/**
 * Reads DIR/summary.json (and whether DIR/report.html is there) without ever throwing: a missing, oversized,
 * unparseable or misshapen summary is `{ ok: false, error }` with a message for the page.
 * @example
 * ```ts
 * const r = await readPrivacyReport('/var/lib/mdms/privacy-report');
 * if (r.ok) r.figures.households;
 * ```
 */
export async function readPrivacyReport(dir: string): Promise<PrivacyReport> {
  const html = await stat(join(dir, 'report.html')).then(
    (s) => s.isFile(),
    () => false,
  );
  let file: { body: Buffer; mtimeMs: number };
  try {
    file = await readBounded(join(dir, 'summary.json'), MAX_SUMMARY_BYTES);
  } catch (e) {
    return { ok: false, error: (e as Error).message, html };
  }
  try {
    return { ok: true, figures: reportFigures(JSON.parse(file.body.toString('utf8'))), html, writtenAtMs: Math.floor(file.mtimeMs) };
  } catch (e) {
    const why = e instanceof ShapeError ? e.message : 'summary.json is not valid JSON';
    return { ok: false, error: `${why}: run smartermeter privacy-report --out again`, html };
  }
}

/**
 * The bytes of a regular file of at most `max` bytes, and its modification time; throws an `Error` saying what
 * is wrong (missing, not a file, too large), naming the file by its base name only. Reads at most `max + 1`
 * bytes whatever the file grows to meanwhile.
 * @example
 * ```ts
 * const { body } = await readBounded('report/report.html', MAX_REPORT_BYTES);
 * ```
 */
export async function readBounded(path: string, max: number): Promise<{ body: Buffer; mtimeMs: number }> {
  const name = basename(path);
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `no ${name} in the privacy report directory (run smartermeter privacy-report --out DIR)` : `cannot read ${name} (${code ?? 'error'})`);
  }
  try {
    const s = await fh.stat();
    if (!s.isFile()) throw new Error(`${name} is not a file`);
    const buf = Buffer.alloc(Math.min(s.size, max) + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) break;
    }
    if (n > max) throw new Error(`${name} is larger than ${max} bytes`);
    if (n > s.size) throw new Error(`${name} changed while it was read: try again`);
    return { body: buf.subarray(0, n), mtimeMs: s.mtimeMs };
  } finally {
    await fh.close();
  }
}

/** The PES's counters in words (policy statement, docs/protocol.md §11.3); other names are shown as they come. */
export const COUNTER_MEANING: Readonly<Record<string, string>> = {
  suppressed: 'windows not released: fewer than k meters reported',
  revisionHeld: 'revisions held back: fewer than revisionK meters changed since the last release',
  membershipHeld: 'releases held by the differencing guard: the membership differed from an earlier release by too few meters',
  dpReleases: 'releases with differential-privacy noise',
};

/**
 * Where the MDMS's own policy and the PES's statements disagree, in words (empty when they agree): an MDMS k
 * below the PES's is no defence in depth; above it, the MDMS refuses aggregates the PES releases.
 * @example
 * ```ts
 * policyWarnings({ k: 1, ... }, [{ pes: 'pes', k: 20, ... }]); // ['The MDMS stores neighbourhoods of 1 meter or more; PES pes releases ...']
 * ```
 */
export function policyWarnings(mdms: IngestPolicyRow | null, statements: readonly PolicyRow[]): string[] {
  const out: string[] = [];
  if (!mdms) out.push('No MDMS ingest has recorded its policy in this database yet: start `smartermeter mdms` on it.');
  if (statements.length === 0) out.push('No PES policy statement has been received: the PES publishes one on sm/v1/agg/policy/<pes> when it starts.');
  for (const s of statements) {
    if (mdms && mdms.k < s.k) out.push(`The MDMS stores neighbourhood aggregates of ${mdms.k} meter${mdms.k === 1 ? '' : 's'} or more, PES ${s.pes} releases ${s.k} or more: set the MDMS's --k to ${s.k} so that it checks the PES (defence in depth).`);
    if (mdms && mdms.k > s.k) out.push(`The MDMS refuses neighbourhood aggregates of fewer than ${mdms.k} meters, but PES ${s.pes} releases them from ${s.k}: those are refused and lost.`);
    if (!s.membershipGuard) out.push(`PES ${s.pes} runs without the differencing (membership) guard: one household can be isolated by comparing two releases.`);
  }
  if (mdms && !mdms.fleetChecked) out.push('The MDMS ingest runs without the fleet (no fleet.json in its key set): it does not refuse aggregates for unknown households or neighbourhoods.');
  return out;
}
