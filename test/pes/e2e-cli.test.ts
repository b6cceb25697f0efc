// `smartermeter pes --e2e` and `smartermeter guardian` flags: what the blind aggregators cannot honour is refused
// with a clear error each, before any key or state is touched.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerGuardianCommand } from '../../guardian/cli.js';
import { registerPesCommand } from '../../pes/cli.js';

async function run(register: (p: Command) => void, args: string[]): Promise<string> {
  const program = new Command('smartermeter').exitOverride();
  let error = '';
  program.configureOutput({ writeErr: (s) => (error += s), writeOut: () => undefined });
  register(program);
  for (const c of program.commands) c.exitOverride();
  try {
    await program.parseAsync(['node', 'smartermeter', ...args]);
  } catch (e) {
    return error || (e as Error).message;
  }
  return 'no error';
}

describe('pes --e2e flags', () => {
  it.each([
    [['--dp-max-power', '5000'], /--dp-max-power cannot be used with --e2e: the sensitivity is the meters'/],
    [['--dp-budget', '4'], /--dp-budget needs --dp-epsilon/],
    [['--dp-epsilon', '1', '--dp-budget', '0.5'], /--dp-budget must be at least --dp-epsilon/],
    [['--partition', 'north', '--neighbourhoods', 'nb1'], /--partition cannot be used with --e2e: the blind PES runs the whole fleet/],
    [['--state-schema', 'x'], /--state-schema cannot be used with --e2e/],
    [['--max-skew', '30s'], /--max-skew must be at least 1m/],
    [['--state', 'postgres://pes@db/pes'], /--state with --e2e must be a SQLite file/],
    [['--retention', '10m'], /--retention must be longer than --lateness/],
  ])('refuses %j', async (args, msg) => {
    expect(await run(registerPesCommand, ['pes', '--e2e', '--keys', '/nonexistent', ...args])).toMatch(msg);
  });

  it('loads the e2e key set only after the flags passed (a classic flag set reaches the key loader)', async () => {
    expect(await run(registerPesCommand, ['pes', '--e2e', '--keys', '/nonexistent', '--k', '5'])).toMatch(/nonexistent/);
    // --dp-epsilon is the meters' noise, which the blind PES folds and records: taken, not refused.
    expect(await run(registerPesCommand, ['pes', '--e2e', '--keys', '/nonexistent', '--dp-epsilon', '1'])).toMatch(/nonexistent/);
    expect(await run(registerGuardianCommand, ['guardian', '--keys', '/nonexistent', '--dp-epsilon', '1'])).toMatch(/nonexistent/);
    expect(await run(registerGuardianCommand, ['guardian', '--keys', '/nonexistent', '--dp-epsilon', '0'])).toMatch(/--dp-epsilon must be a positive number/);
    // --max-skew: both parties bound reading times against their watermark by the same rule (lib/e2e-windows.ts).
    expect(await run(registerPesCommand, ['pes', '--e2e', '--keys', '/nonexistent', '--max-skew', '1d'])).toMatch(/nonexistent/);
    // --dp-budget: the blind PES withholds a release beyond it (pes/e2e.ts).
    expect(await run(registerPesCommand, ['pes', '--e2e', '--keys', '/nonexistent', '--dp-epsilon', '0.5', '--dp-budget', '9.6'])).toMatch(/nonexistent/);
    expect(await run(registerGuardianCommand, ['guardian', '--keys', '/nonexistent', '--max-skew', '1d'])).toMatch(/nonexistent/);
  });
});

describe('guardian flags', () => {
  it('takes the PES\'s --lateness 0 (the key loader is reached)', async () => {
    expect(await run(registerGuardianCommand, ['guardian', '--keys', '/nonexistent', '--lateness', '0'])).toMatch(/nonexistent/);
  });

  it.each([
    [['--retention', '10m'], /--retention must be longer than --lateness/],
    [['--client-id', 'a/b'], /--client-id/],
    [['--gateway', 'gw+1'], /--gateway/],
    [['--username', 'g'], /--username and --password-file go together/],
    [['--billing-period', '2d'], /--billing-period: expected 1d, 1mo or Nh/],
    [['--interval', '7m'], /--interval must be between 1m and 1d and divide a day/],
    [['--lateness', 'soon'], /--lateness must look like/],
    [['--max-skew', '30s'], /--max-skew must be at least 1m/],
  ])('refuses %j', async (args, msg) => {
    expect(await run(registerGuardianCommand, ['guardian', '--keys', '/nonexistent', ...args])).toMatch(msg);
  });
});
