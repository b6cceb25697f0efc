/** Runs `smartermeter ucs …` with only the UCS registrar (what cli/main.ts will do once it is wired there). */
import { Command } from 'commander';
import { registerUcsCommand } from '../../ucs/cli.js';

const program = new Command('smartermeter').showHelpAfterError();
registerUcsCommand(program);
program.parseAsync(process.argv).then(
  () => process.exit(0),
  (e: Error) => {
    console.error(`smartermeter: ${e.message}`);
    process.exit(1);
  },
);
