/**
 * `smartermeter`: one CLI that dispatches to each actor's commands.
 *
 * Start-up is lazy: a command names its actor, and only that actor's module (and the packages it needs) is
 * loaded. The root help needs every command's name and description; `bin/build.js` records them in
 * `dist/commands.json` when it compiles the CLI, and the compiled CLI lists them from there without loading
 * any actor. Without that summary (running from the sources) every actor is loaded for the root help.
 * Literal `import()`s only, so that esbuild bundles each actor as its own chunk.
 * @module
 */
import { Command, CommanderError, Help, Option } from 'commander';
import { optionHelp } from '../lib/flags.js';
import { LOG_FORMATS, setLogFormat, type LogFormat } from '../lib/log.js';

let errorShown = false;

type Registrar = (program: Command) => void;

/** Every command and how to load its registrar, in the order `--help` lists them. */
export const COMMANDS: Record<string, () => Promise<Registrar>> = {
  provision: async () => (await import('../provision/cli.js')).registerProvisionCommand,
  meter: async () => (await import('../firmware/cli.js')).registerMeterCommand,
  gateway: async () => (await import('../gateway/cli.js')).registerGatewayCommand,
  broker: async () => (await import('../broker/cli.js')).registerBrokerCommand,
  cluster: async () => (await import('../broker/cluster-cli.js')).registerClusterCommand,
  pes: async () => (await import('../pes/cli.js')).registerPesCommand,
  guardian: async () => (await import('../guardian/cli.js')).registerGuardianCommand,
  mdms: async () => {
    const [ingest, web] = await Promise.all([import('../mdms/cli.js'), import('../mdms/web/cli.js')]);
    return (program) => {
      ingest.registerMdmsCommand(program);
      web.registerMdmsWebCommands(program.commands.find((c) => c.name() === 'mdms')!);
    };
  },
  ucs: async () => (await import('../ucs/cli.js')).registerUcsCommand,
  replay: async () => (await import('./replay.js')).registerReplayCommand,
  demo: async () => (await import('./demo.js')).registerDemoCommand,
  'privacy-report': async () => (await import('./privacy-report.js')).registerPrivacyReportCommand,
};

/** One line of the root help: what `dist/commands.json` holds per command. */
export interface CommandSummary {
  name: string;
  /** The command as the root help shows it, e.g. `gateway [options]`. */
  term: string;
  description: string;
}

/**
 * The command a command line asks for (`smartermeter [help] <command> ...`), if it names one.
 * @example
 * ```ts
 * commandOf(['node', 'smartermeter', 'meter', '--help']); // 'meter'
 * ```
 */
export function commandOf(argv: string[]): string | undefined {
  const operands = argv.slice(2).filter((a, i, all) => !a.startsWith('-') && !ROOT_VALUE_OPTIONS.has(all[i - 1] ?? ''));
  const name = operands[0] === 'help' ? operands[1] : operands[0];
  return name !== undefined && Object.hasOwn(COMMANDS, name) ? name : undefined;
}

const plainHelp = new Help();

/** Options of the root program that take a value (so that the value is not taken for a command). */
const ROOT_VALUE_OPTIONS = new Set(['--log-format']);

function rootProgram(): Command {
  const program = new Command('smartermeter')
    .description('Smarter Metering: privacy-enhancing smart metering (meters, concentrator, PES, MDMS, household app)')
    .configureHelp({ showGlobalOptions: true, optionDescription: (o) => optionHelp(o, plainHelp) })
    .addOption(
      new Option('--log-format <format>', 'log lines for people (pretty) or machines (json); auto: pretty on a terminal, json when piped').choices(LOG_FORMATS).default('auto'),
    )
    .hook('preAction', (root) => {
      const f = root.opts<{ logFormat?: LogFormat }>().logFormat;
      if (f && f !== 'auto') setLogFormat(f);
    })
    .showHelpAfterError()
    .configureOutput({
      outputError: (s, write) => {
        errorShown = true;
        write(s);
      },
    });
  return program;
}

/**
 * Builds the program: with `only`, just that command; with `summaries` and no `only`, the root listing from
 * them (no actor loaded); otherwise every command.
 * @example
 * ```ts
 * (await buildProgram()).parseAsync(['node', 'smartermeter', '--help']);
 * ```
 */
export async function buildProgram(opts: { only?: string; summaries?: CommandSummary[] } = {}): Promise<Command> {
  const program = rootProgram();
  if (opts.only !== undefined) {
    (await COMMANDS[opts.only]!())(program);
    // The root's own help would list this one command only: point at the whole list instead.
    program.showHelpAfterError('(smartermeter --help lists every command)');
    return program;
  }
  const summaries = opts.summaries?.filter((s) => Object.hasOwn(COMMANDS, s.name));
  if (summaries && summaries.length === Object.keys(COMMANDS).length) {
    for (const s of summaries) program.command(s.name).description(s.description);
    const terms = new Map(summaries.map((s) => [s.name, s.term]));
    const plain = new Help();
    program.configureHelp({ subcommandTerm: (c) => terms.get(c.name()) ?? plain.subcommandTerm(c) });
    return program;
  }
  for (const load of Object.values(COMMANDS)) (await load())(program);
  return program;
}

/**
 * The root help's line for every command of a fully built program (what bin/build.js stores).
 * @example
 * ```ts
 * summarise(await buildProgram()); // [{ name: 'provision', term: 'provision', description: '...' }, ...]
 * ```
 */
export function summarise(program: Command): CommandSummary[] {
  const help = program.createHelp();
  return program.commands.map((c) => ({ name: c.name(), term: help.subcommandTerm(c), description: c.description() }));
}

/**
 * Runs the CLI; exits non-zero with a clear message on any error (no stack trace for user errors).
 * `summaries` (from dist/commands.json) lets the root help list the commands without loading them.
 * @example
 * ```ts
 * await main(process.argv);
 * ```
 */
export async function main(argv: string[], opts: { summaries?: CommandSummary[] } = {}): Promise<void> {
  try {
    const only = commandOf(argv);
    const program = await buildProgram(only !== undefined ? { only } : opts);
    program.exitOverride();
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander prints its own parse errors; an InvalidArgumentError thrown inside an action it does not.
      // (commander.help: a bare `smartermeter` printed the help and exits 1, nothing to add.)
      if (e.exitCode !== 0 && !errorShown && e.code !== 'commander.help') console.error(`smartermeter: ${e.message.replace(/^error: /, '')}`);
      process.exit(e.exitCode);
    }
    console.error(`smartermeter: ${(e as Error).message}`);
    if (process.env.SM_DEBUG) console.error(e);
    process.exit(1);
  }
}
