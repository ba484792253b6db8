import type { Command } from '../command.ts';
import { diskCommands } from './disk-commands.ts';
import { drillCommands } from './drill-commands.ts';
import { groupCommands } from './group-commands.ts';
import { hostCommands } from './host-command.ts';
import { lifecycleCommands } from './lifecycle-commands.ts';
import { planCommands } from './plan-commands.ts';
import { resourceCommands } from './resource-commands.ts';
import { scriptCommands } from './script-commands.ts';
import { serverCommands } from './server-commands.ts';
import { upCommands } from './up-command.ts';
import { vaultCommands } from './vault-commands.ts';
import { viewCommands } from './view-commands.ts';

/** Every `haven` command, in the order help lists them. */
export const COMMANDS: Command[] = [
  ...upCommands,
  ...vaultCommands,
  ...hostCommands,
  ...diskCommands,
  ...resourceCommands,
  ...serverCommands,
  ...lifecycleCommands,
  ...viewCommands,
  ...planCommands,
  ...drillCommands,
  ...scriptCommands,
  ...groupCommands,
];
