import { startHostAgent } from '../../host/index.ts';
import { type Command, str } from '../command.ts';
import { runUntilSignal } from './vault-commands.ts';

export const hostCommands: Command[] = [
  {
    name: 'host',
    summary:
      'Run a host agent; the first time, enrol it: --vault URL --token ENROLMENT-TOKEN --name NAME --site SITE [--data DIR]',
    options: {
      data: { type: 'string' },
      vault: { type: 'string' },
      token: { type: 'string' },
      name: { type: 'string' },
      site: { type: 'string' },
      fingerprint: { type: 'string' },
    },
    run: async (args) => {
      const dataDir = str(args, 'data') ?? '.haven-host';
      const vault = str(args, 'vault');
      const token = str(args, 'token');
      const agent = await startHostAgent({
        dataDir,
        ...(vault && token
          ? {
              enrol: {
                apiUrl: vault,
                token,
                name: str(args, 'name') ?? (await import('node:os')).hostname(),
                site: str(args, 'site') ?? '',
                ...(str(args, 'fingerprint') ? { expectedFingerprint: str(args, 'fingerprint')! } : {}),
              },
            }
          : {}),
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(
        `${JSON.stringify({ hostId: agent.identity.hostId, name: agent.identity.name })}\n`,
      );
      return runUntilSignal(agent.stop);
    },
  },
];
