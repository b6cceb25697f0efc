import type { Command } from 'commander';
import { provision } from './keys.js';
import { intOption } from '../lib/flags.js';

/**
 * `smartermeter provision --fleet fleet.csv --out <dir>`.
 * @example
 * ```ts
 * registerProvisionCommand(program);
 * ```
 */
export function registerProvisionCommand(program: Command): void {
  program
    .command('provision')
    .description('create meter keys and system titles, PES/MDMS key pairs, Paillier key, broker credentials and activation codes for a fleet')
    .requiredOption('--fleet <csv>', 'fleet file: meter,household,neighbourhood,source')
    .requiredOption('--out <dir>', 'directory for the key set (must not already hold one)')
    .option('--rsa-bits <n>', 'RSA modulus size for PES and MDMS keys', intOption('--rsa-bits', 2048, 4096), 3072)
    .option('--paillier-bits <n>', 'Paillier modulus size', intOption('--paillier-bits', 1024, 4096), 2048)
    .option('--household-keys', 'also generate household key pairs (for `ucs watch`, the HA bridge and tests)', false)
    .action(async (o: { fleet: string; out: string; rsaBits: number; paillierBits: number; householdKeys: boolean }) => {
      const fleet = await provision({ fleetCsv: o.fleet, out: o.out, rsaBits: o.rsaBits, paillierBits: o.paillierBits, householdKeys: o.householdKeys });
      console.log(
        `provisioned ${fleet.meters.length} meters, ${fleet.households.length} households, ${fleet.neighbourhoods.length} neighbourhoods, ` +
          `${fleet.gateways.length} gateways into ${o.out} (secrets are in files with mode 0600; nothing secret was printed)`,
      );
    });
}
