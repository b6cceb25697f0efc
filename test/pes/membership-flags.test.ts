import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { registerPesCommand } from '../../pes/cli.js';
import { registerReplayCommand } from '../../cli/replay.js';
import { resolveSettings } from '../../pes/pes.js';

/** The flags a command's action would receive. */
function parse(register: (p: Command) => void, name: string, args: string[]): Record<string, unknown> | undefined {
  const program = new Command('smartermeter').exitOverride();
  program.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  register(program);
  let flags: Record<string, unknown> | undefined;
  program.commands.find((c) => c.name() === name)!.exitOverride().action((f: Record<string, unknown>) => void (flags = f));
  program.parse(['node', 'smartermeter', name, ...args]);
  return flags;
}

describe('membership guard flags', () => {
  it('is on by default in the PES settings, `pes` and `replay`; --no-membership-guard turns it off', () => {
    expect(resolveSettings({}).membershipGuard).toBe(true);
    expect(parse(registerPesCommand, 'pes', ['--keys', 'k'])?.membershipGuard).toBe(true);
    expect(parse(registerPesCommand, 'pes', ['--keys', 'k', '--no-membership-guard'])?.membershipGuard).toBe(false);
    expect(parse(registerReplayCommand, 'replay', ['--fleet', 'f', '--db', 'd'])?.membershipGuard).toBe(true);
    expect(parse(registerReplayCommand, 'replay', ['--fleet', 'f', '--db', 'd', '--no-membership-guard'])?.membershipGuard).toBe(false);
  });

  it('--dp-epsilon takes a positive number on pes and replay, and nothing else', () => {
    expect(parse(registerPesCommand, 'pes', ['--keys', 'k', '--dp-epsilon', '0.5'])?.dpEpsilon).toBe(0.5);
    expect(parse(registerReplayCommand, 'replay', ['--fleet', 'f', '--db', 'd', '--dp-epsilon', '2'])?.dpEpsilon).toBe(2);
    expect(parse(registerPesCommand, 'pes', ['--keys', 'k'])?.dpEpsilon).toBeUndefined();
    for (const bad of ['0', '-1', 'x', '1e3', 'NaN']) expect(() => parse(registerPesCommand, 'pes', ['--keys', 'k', '--dp-epsilon', bad]), bad).toThrow();
  });

  it('--dp-budget takes a positive number, --pes-id a topic id (no flag default: the PES takes pes, or pes-<partition>)', () => {
    const o = parse(registerPesCommand, 'pes', ['--keys', 'k', '--dp-epsilon', '0.1', '--dp-budget', '9.6']);
    expect(o).toMatchObject({ dpEpsilon: 0.1, dpBudget: 9.6 });
    expect(o?.pesId).toBeUndefined();
    expect(parse(registerPesCommand, 'pes', ['--keys', 'k', '--pes-id', 'pes-east'])?.pesId).toBe('pes-east');
    for (const bad of ['0', '-1', 'x', 'Infinity']) expect(() => parse(registerPesCommand, 'pes', ['--keys', 'k', '--dp-budget', bad]), bad).toThrow();
    for (const bad of ['a/b', '+', '#', '']) expect(() => parse(registerPesCommand, 'pes', ['--keys', 'k', '--pes-id', bad]), bad).toThrow();
  });
});
