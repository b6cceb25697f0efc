import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { registerPesCommand, fleetMeters } from '../../pes/cli.js';

function parse(args: string[]): { error?: string; flags?: Record<string, unknown> } {
  const program = new Command('smartermeter').exitOverride();
  let error: string | undefined;
  program.configureOutput({ writeErr: (s) => (error = s.trim()), writeOut: () => undefined });
  registerPesCommand(program);
  const pes = program.commands.find((c) => c.name() === 'pes')!;
  let flags: Record<string, unknown> | undefined;
  pes.exitOverride().action((f: Record<string, unknown>) => void (flags = f));
  try {
    program.parse(['node', 'smartermeter', 'pes', ...args]);
  } catch {
    /* reported through writeErr */
  }
  return { error, flags };
}

describe('smartermeter pes flags', () => {
  it('parses durations, periods and zones into settings', () => {
    const { flags, error } = parse(['--keys', 'k', '--interval', '5m', '--billing-period', '1mo', '--tz', 'Europe/London', '--lateness', '0', '--k', '25', '--max-skew', '2d', '--retention', '3d']);
    expect(error).toBeUndefined();
    expect(flags).toMatchObject({ interval: 300, billingPeriod: { unit: 'month', count: 1 }, tz: 'Europe/London', lateness: 0, k: 25, maxSkew: 172800, retention: 259200, mqtt: 'mqtt://127.0.0.1:1883' });
    expect(parse(['--keys', 'k']).flags).toMatchObject({ interval: 900, lateness: 1800, k: 20, state: 'pes-state.sqlite' });
  });

  it.each([
    [['--interval', '7m'], /--interval must be between 1m and 1d and divide a day/],
    [['--interval', 'soon'], /--interval must look like/],
    [['--billing-period', '2d'], /--billing-period: expected 1d, 1mo or Nh/],
    [['--tz', 'Mars/Olympus'], /--tz must be an IANA time zone/],
    [['--k', '0'], /--k must be between 1/],
    [['--k', 'twenty'], /--k must be an integer/],
    [['--lateness', '30 min'], /--lateness must look like/],
    [['--max-skew', '0'], /--max-skew must look like|--max-skew must be positive/],
  ])('rejects %j with a clear error', (args, msg) => {
    expect(parse(['--keys', 'k', ...args]).error).toMatch(msg);
  });

  it('requires --keys', () => {
    expect(parse([]).error).toMatch(/--keys/);
  });

  it('refuses a fleet meter without a key', () => {
    const key = Buffer.alloc(32, 1);
    const fleet = [
      { meter: '534d520000000001', household: 'hh1', neighbourhood: 'nb1' },
      { meter: '534d520000000002', household: 'hh2', neighbourhood: 'nb1' },
    ];
    expect(() => fleetMeters(fleet, new Map([['534d520000000001', key]]))).toThrow(/no key for meter 534d520000000002/);
    expect(fleetMeters(fleet.slice(0, 1), new Map([['534d520000000001', key]])).get('534d520000000001')).toEqual({ key, household: 'hh1', neighbourhood: 'nb1' });
  });
});
