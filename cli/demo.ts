import type { Command } from 'commander';
export function registerDemoCommand(program: Command): void {
  program.command('demo').description('(being written)').action(() => {
    throw new Error('demo not yet available');
  });
}
