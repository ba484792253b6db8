import { HavenError } from '../../errors/index.ts';
import { startHost } from '../../host/index.ts';
import { parseSize } from '../../storage/index.ts';
import { type Command, dataDirOption, shareGroupOption, str } from '../command.ts';
import { runUntilSignal } from './vault-commands.ts';

export const hostCommands: Command[] = [
  {
    name: 'host',
    summary:
      'Run a host agent (disk service, replication, replica store, QEMU driver); the first time, enrol it: --vault URL --token ENROLMENT-TOKEN --name NAME --site SITE [--data DIR] [--replication-listen 0.0.0.0:9443] [--bandwidth 50M] [--share-group GROUP: a hypervisor running as another user, e.g. libvirt-qemu, in GROUP opens the disk sockets]',
    options: {
      data: { type: 'string' },
      vault: { type: 'string' },
      token: { type: 'string' },
      name: { type: 'string' },
      site: { type: 'string' },
      fingerprint: { type: 'string' },
      'replication-listen': { type: 'string' },
      'replication-advertise': { type: 'string' },
      bandwidth: { type: 'string' },
      'share-group': { type: 'string' },
    },
    run: async (args) => {
      const dataDir = dataDirOption(args, '.haven-host');
      const vault = str(args, 'vault');
      const token = str(args, 'token');
      const listen = (str(args, 'replication-listen') ?? '0.0.0.0:9443').match(/^(.*):(\d+)$/);
      if (!listen)
        throw new HavenError('bad_request', '--replication-listen must be HOST:PORT', {
          field: 'replication-listen',
        });
      const { shareGroup } = await shareGroupOption(args);
      const host = await startHost({
        dataDir,
        ...(shareGroup ? { share: { group: shareGroup, root: dataDir } } : {}),
        replicationListen: { host: listen[1]!.replace(/^\[|\]$/g, ''), port: Number(listen[2]) },
        ...(str(args, 'replication-advertise')
          ? { replicationAdvertise: str(args, 'replication-advertise')! }
          : {}),
        // Bytes per second for everything this host replicates, e.g. 50M.
        ...(str(args, 'bandwidth') ? { bandwidthBytesPerSec: parseSize(str(args, 'bandwidth')!) } : {}),
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
      const { identity } = host.agent;
      process.stdout.write(
        `${JSON.stringify({ hostId: identity.hostId, name: identity.name, replicationAddress: host.dataPath.replicationAddress })}\n`,
      );
      return runUntilSignal(host.stop);
    },
  },
];
