/**
 * The replay's accounting rules, pure: when a neighbourhood's released energy must equal its meters' (and what
 * is wrong when it does not), what settles a drain (aggregates only, never policy statements), and the flags
 * that `replay` and `demo` share with the PES.
 */
import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { checkDp, checkNeighbourhood, formatSummary, pesIdOption, registerReplayCommand, type ReplaySummary } from '../../cli/replay.js';
import { registerDemoCommand, DEMO_PV_SHARE } from '../../cli/demo.js';
import { aggregatesSettled } from '../../cli/system.js';
import type { IngestCounters } from '../../mdms/ingest.js';

const full = new Map([
  [0, 3],
  [900, 3],
]);
const base = { neighbourhood: 'nb', meters: 3, k: 3, windowMeters: full, metered: { importWh: 100, exportWh: 40 }, released: { importWh: 100, exportWh: 40, windows: 2 }, noised: false, revisionsHeld: false };

describe('checkNeighbourhood', () => {
  it('requires released = metered, import and export, window for window, when every window had every meter', () => {
    expect(checkNeighbourhood(base)).toEqual({ check: expect.objectContaining({ checked: true, windows: 2, releasedWindows: 2 }), problems: [] });
    expect(checkNeighbourhood({ ...base, released: { importWh: 100, exportWh: 39, windows: 2 } }).problems).toEqual(['neighbourhood nb: metered export 40 Wh, released export 39 Wh']);
    expect(checkNeighbourhood({ ...base, released: { importWh: 99, exportWh: 40, windows: 2 } }).problems).toEqual(['neighbourhood nb: metered 100 Wh, released 99 Wh']);
    expect(checkNeighbourhood({ ...base, released: { importWh: 100, exportWh: 40, windows: 1 } }).problems).toEqual(['neighbourhood nb: 2 windows had readings, the MDMS holds 1']);
  });

  it('says why it cannot compare when the PES rightly released less or other, and then finds no problem', () => {
    const less = { importWh: 10, exportWh: 0, windows: 1 };
    expect(checkNeighbourhood({ ...base, released: less, noised: true }).check.checked).toBe('noised');
    expect(checkNeighbourhood({ ...base, released: less, revisionsHeld: true }).check.checked).toBe('revisions held');
    expect(checkNeighbourhood({ ...base, released: less, windowMeters: new Map([[0, 3], [900, 2]]) }).check.checked).toBe('windows below k');
    const partial = checkNeighbourhood({ ...base, k: 2, released: less, windowMeters: new Map([[0, 3], [900, 2]]) });
    expect(partial.check.checked).toBe('partial windows');
    expect(partial.problems).toEqual([]);
  });

  it('a neighbourhood below k must have nothing stored at all', () => {
    const none = { importWh: 0, exportWh: 0, windows: 0 };
    expect(checkNeighbourhood({ ...base, meters: 2, released: none })).toEqual({ check: expect.objectContaining({ checked: 'below k' }), problems: [] });
    expect(checkNeighbourhood({ ...base, meters: 2, released: { importWh: 5, exportWh: 0, windows: 1 } }).problems).toEqual(['neighbourhood nb has 2 meters (< k = 3), yet the MDMS holds 1 of its aggregates']);
  });
});

describe('aggregatesSettled', () => {
  it('counts aggregates stored, duplicated or refused for good, and no policy statement', () => {
    const c: IngestCounters = { received: 0, stored: 5, revisions: 1, duplicates: 2, conflicts: 1, unsealFailed: 7, malformed: 1, badSignature: 1, rejectedPrivacy: 1, rejectedUnknown: 1, rejectedNegative: 1, rejectedGap: 1, policyStored: 0, policyIgnored: 0, dbErrors: 3 };
    expect(aggregatesSettled(c)).toBe(14); // 5 stored + 2 duplicates + 1 conflict + 4 refused + 1 malformed + 1 bad signature
    expect(aggregatesSettled({ ...c, policyStored: 40, policyIgnored: 9 })).toBe(14);
  });
});

/** The flags a command's action would receive. */
function parse(register: (p: Command) => void, name: string, args: string[]): Record<string, unknown> {
  const program = new Command('smartermeter').exitOverride();
  program.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  register(program);
  let flags: Record<string, unknown> = {};
  program.commands.find((c) => c.name() === name)!.exitOverride().action((f: Record<string, unknown>) => void (flags = f));
  program.parse(['node', 'smartermeter', name, ...args]);
  return flags;
}

describe('replay and demo flags', () => {
  it('demo gives households panels by default; --pv-share, --dp-epsilon, --dp-budget and --pes-id reach both commands', () => {
    expect(DEMO_PV_SHARE).toBeGreaterThan(0);
    expect(parse(registerDemoCommand, 'demo', [])).toMatchObject({ pvShare: DEMO_PV_SHARE, pesId: 'pes' });
    expect(parse(registerDemoCommand, 'demo', ['--pv-share', '0', '--dp-epsilon', '0.5', '--dp-budget', '48', '--pes-id', 'pes-east'])).toMatchObject({ pvShare: 0, dpEpsilon: 0.5, dpBudget: 48, pesId: 'pes-east' });
    expect(parse(registerReplayCommand, 'replay', ['--fleet', 'f', '--db', 'd'])).toMatchObject({ pvShare: 0, pesId: 'pes' });
    expect(parse(registerReplayCommand, 'replay', ['--fleet', 'f', '--db', 'd', '--dp-epsilon', '1', '--dp-budget', '96', '--pes-id', 'p2'])).toMatchObject({ dpEpsilon: 1, dpBudget: 96, pesId: 'p2' });
    for (const bad of ['1.5', '-0.1', 'x']) expect(() => parse(registerDemoCommand, 'demo', ['--pv-share', bad]), bad).toThrow(/--pv-share/);
    for (const bad of ['a/b', '+', '#']) expect(() => parse(registerReplayCommand, 'replay', ['--fleet', 'f', '--db', 'd', '--pes-id', bad]), bad).toThrow();
    expect(pesIdOption('pes-west')).toBe('pes-west');
  });

  it('refuses a DP budget without an epsilon or below it before anything starts', () => {
    expect(() => checkDp(undefined, 10)).toThrow('--dp-budget needs --dp-epsilon');
    expect(() => checkDp(2, 1)).toThrow('--dp-budget (1) must be at least --dp-epsilon (2)');
    expect(() => checkDp(0.5, 10)).not.toThrow();
    expect(() => checkDp(0.5, undefined)).not.toThrow();
  });
});

describe('formatSummary', () => {
  const nb = (neighbourhood: string, checked: ReplaySummary['neighbourhoods'][number]['checked']) => ({ neighbourhood, checked, meters: 3, meteredWh: 1, meteredExportWh: 0, releasedWh: 1, releasedExportWh: 0, releasedWindows: 1, windows: 1 });
  const s: ReplaySummary = {
    meters: 2, readings: 10, readingsFolded: 10, frames: 2, retransmits: 0, released: 3, suppressed: 0, membershipHeld: 0, stored: 3, seconds: 1, readingsPerSecond: 10,
    households: [
      { household: 'a', meteredWh: 100, billedWh: 100, meteredExportWh: 30, billedExportWh: 30 },
      { household: 'b', meteredWh: 50, billedWh: 50, meteredExportWh: 0, billedExportWh: 0 },
    ],
    neighbourhoods: [nb('nb-1', true), nb('nb-2', 'below k')],
    policyStored: 1, rejected: {}, ok: true, problems: [],
  };

  it('prints import and export, metered and billed, and which neighbourhoods were compared', () => {
    const text = formatSummary(s);
    expect(text).toContain('energy            150 Wh metered, 150 Wh billed over 2 households');
    expect(text).toContain('export            30 Wh metered, 30 Wh billed (1 households fed in)');
    expect(text).toContain('neighbourhoods    1 of 2 released exactly their meters\' import and export (not comparable: nb-2 below k)');
    expect(text).toMatch(/every reading accounted for/);
  });

  it('counts reasons when many neighbourhoods were not comparable, and lists problems on failure', () => {
    const many = { ...s, neighbourhoods: [nb('a', 'partial windows'), nb('b', 'partial windows'), nb('c', 'below k')], ok: false, problems: ['household a: metered export 30 Wh, billed export 0 Wh'] };
    const text = formatSummary(many);
    expect(text).toContain('(not comparable: 2 partial windows, 1 below k)');
    expect(text).toContain('FAILED:\n  household a: metered export 30 Wh, billed export 0 Wh');
  });
});
