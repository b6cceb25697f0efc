/**
 * What `--help` tells a new user (issue 20 item 7): required flags say so, durations read as the README writes
 * them (15m, not 900), the root help lists every command from the summaries the build stores, and a command
 * line names the one actor to load.
 */
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, COMMANDS, commandOf, summarise } from '../../cli/main.js';
import { formatDuration } from '../../lib/flags.js';

const sub = (p: Command, ...path: string[]): Command => path.reduce((c, n) => c.commands.find((x) => x.name() === n)!, p);
/** A command's help on one line (commander wraps at 80 columns). */
const help = (c: Command): string => c.helpInformation().replace(/\s+/g, ' ');

describe('smartermeter --help', () => {
  it('marks required flags and shows durations as 15m', async () => {
    const meter = await buildProgram({ only: 'meter' });
    const synth = help(sub(meter, 'meter', 'synth'));
    for (const flag of ['--seed', '--start', '--days', '--out']) expect(synth).toMatch(new RegExp(`${flag} <\\w+> (?:(?! --[a-z-]+ <\\w+>).)*\\(required\\)`));
    expect(synth).not.toMatch(/--tz <zone> (?:(?! --[a-z-]+ <\w+>).)*\(required\)/);
    expect(help(sub(meter, 'meter', 'run'))).toMatch(/--port-wait <duration> [^-]*\(default: 30s\)/);
    const replay = help(sub(await buildProgram({ only: 'replay' }), 'replay'));
    expect(replay).toContain('--interval <d> neighbourhood interval (default: 15m)');
    expect(replay).toContain('--lateness <d> allowed lateness before a window closes (default: 30m)');
    expect(help(sub(await buildProgram({ only: 'gateway' }), 'gateway'))).toMatch(/--stats <interval> [^-]*\(default: 10s\)/);
    expect(help(sub(await buildProgram({ only: 'pes' }), 'pes'))).toMatch(/--max-skew <duration> [^-]*\(default: 1w\)/);
  });

  it('formats seconds as the shortest exact duration', () => {
    expect([0, 10, 90, 900, 1800, 3600, 86_400, 604_800, 1_209_600].map(formatDuration)).toEqual(['0s', '10s', '90s', '15m', '30m', '1h', '1d', '1w', '2w']);
  });

  it('the root help from stored summaries equals the root help of every command loaded', async () => {
    const full = await buildProgram();
    const summaries = summarise(full);
    expect(summaries.map((s) => s.name)).toEqual(Object.keys(COMMANDS));
    expect((await buildProgram({ summaries })).helpInformation()).toBe(full.helpInformation());
  });

  it('a command line names the one command to load, skipping root option values', () => {
    expect(commandOf(['node', 'sm', 'meter', 'synth', '--help'])).toBe('meter');
    expect(commandOf(['node', 'sm', '--log-format', 'json', 'pes', '--keys', 'k'])).toBe('pes');
    expect(commandOf(['node', 'sm', 'help', 'privacy-report'])).toBe('privacy-report');
    expect(commandOf(['node', 'sm', '--help'])).toBeUndefined();
    expect(commandOf(['node', 'sm', 'nonsense'])).toBeUndefined();
    expect(commandOf(['node', 'sm', 'toString'])).toBeUndefined();
  });
});
