/**
 * `smartermeter`: one CLI that dispatches to each actor's commands.
 * @module
 */
import { Command, CommanderError } from 'commander';
import { registerProvisionCommand } from '../provision/cli.js';

let errorShown = false;

/** Every actor's command registrar, in the order `--help` lists them. */
const registrars: [string, string][] = [
  ['../provision/cli.js', 'registerProvisionCommand'],
  ['../firmware/cli.js', 'registerMeterCommand'],
  ['../gateway/cli.js', 'registerGatewayCommand'],
  ['../broker/cli.js', 'registerBrokerCommand'],
  ['../broker/cluster-cli.js', 'registerClusterCommand'],
  ['../pes/cli.js', 'registerPesCommand'],
  ['../mdms/cli.js', 'registerMdmsCommand'],
  ['../ucs/cli.js', 'registerUcsCommand'],
  ['./replay.js', 'registerReplayCommand'],
  ['./demo.js', 'registerDemoCommand'],
  ['./privacy-report.js', 'registerPrivacyReportCommand'],
];

/**
 * Builds the program with every command registered.
 * @example
 * ```ts
 * (await buildProgram()).parseAsync(['node', 'smartermeter', '--help']);
 * ```
 */
export async function buildProgram(): Promise<Command> {
  const program = new Command('smartermeter')
    .description('Smarter Metering: privacy-enhancing smart metering (meters, concentrator, PES, MDMS, household app)')
    .showHelpAfterError()
    .configureOutput({
      outputError: (s, write) => {
        errorShown = true;
        write(s);
      },
    });
  registerProvisionCommand(program);
  for (const [path, name] of registrars.slice(1)) {
    const mod = (await import(path)) as Record<string, (p: Command) => void>;
    const register = mod[name];
    if (typeof register !== 'function') throw new Error(`${path} does not export ${name}`);
    register(program);
  }
  const { registerMdmsWebCommands } = await import('../mdms/web/cli.js');
  registerMdmsWebCommands(program.commands.find((c) => c.name() === 'mdms')!);
  return program;
}

/** Runs the CLI; exits non-zero with a clear message on any error (no stack trace for user errors). */
export async function main(argv: string[]): Promise<void> {
  const program = await buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander prints its own parse errors; an InvalidArgumentError thrown inside an action it does not.
      if (e.exitCode !== 0 && !errorShown) console.error(`smartermeter: ${e.message.replace(/^error: /, '')}`);
      process.exit(e.exitCode);
    }
    console.error(`smartermeter: ${(e as Error).message}`);
    if (process.env.SM_DEBUG) console.error(e);
    process.exit(1);
  }
}
