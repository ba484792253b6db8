import { HavenError } from '../../errors/index.ts';
import { type ServerEndpoint, startHost } from '../../host/index.ts';
import { parseSize } from '../../text/human-units.ts';
import {
  type Command,
  type CommandArgs,
  dataDirOption,
  libvirtOption,
  shareGroupOption,
  str,
} from '../command.ts';
import { readSecretFile } from '../secret-file.ts';
import { runUntilSignal } from './vault-commands.ts';

/** Where servers reach a host by default: NBD's own port and the next one. */
export const SERVER_PORTS = { nbdPort: 10809, agentPort: 10810 };

export const hostCommands: Command[] = [
  {
    name: 'host',
    summary:
      'Run a host agent (disk service, replication, replica store, QEMU driver); the first time, enrol it with the vault',
    examples: [
      'haven host --vault https://vault:8440 --fingerprint SHA256:… --token-file enrol.token --name kvm-dr-01 --site dr',
      'haven host --data /var/lib/haven-host',
    ],
    options: {
      data: {
        type: 'string',
        value: 'DIR',
        description: "the host's identity, journals and replicas (default .haven-host)",
      },
      vault: { type: 'string', value: 'URL', description: "enrolment: the vault's REST API" },
      token: {
        type: 'string',
        value: 'TOKEN',
        description: 'enrolment: the one-time token (shows in ps: prefer --token-file)',
      },
      'token-file': {
        type: 'string',
        value: 'FILE',
        description: 'enrolment: file holding the one-time token (or HAVEN_ENROL_TOKEN)',
      },
      name: {
        type: 'string',
        value: 'NAME',
        description: "enrolment: the host's name (default the hostname)",
      },
      site: { type: 'string', value: 'SITE', description: 'enrolment: the site the host belongs to' },
      fingerprint: {
        type: 'string',
        value: 'SHA256',
        description: "enrolment: expected fingerprint of the vault's certificate",
      },
      'replication-listen': {
        type: 'string',
        value: 'HOST:PORT',
        description: 'where replication from other hosts arrives (default 0.0.0.0:9443)',
      },
      'replication-advertise': {
        type: 'string',
        value: 'HOST:PORT',
        description: 'the address other hosts reach replication at, when not the listen address',
      },
      bandwidth: {
        type: 'string',
        value: 'SIZE',
        description: 'bytes per second for all replication from this host (e.g. 50M)',
      },
      'share-group': {
        type: 'string',
        value: 'GROUP',
        description:
          'a hypervisor running as another user (e.g. libvirt-qemu) in GROUP opens the disk sockets',
      },
      storage: {
        type: 'string',
        multiple: true,
        value: 'DIR',
        description: 'a folder disk images may be attached from (default DATA/images)',
      },
      libvirt: {
        type: 'string',
        value: 'URI',
        description: 'drive libvirt (e.g. qemu:///system) instead of the built-in QEMU driver',
      },
      'server-listen': {
        type: 'string',
        value: 'ADDR[:NBD[:AGENT]]',
        description: `serve physical servers: their md legs (NBD, default port ${SERVER_PORTS.nbdPort}) and agents (HTTPS, default ${SERVER_PORTS.agentPort})`,
      },
      'server-advertise': {
        type: 'string',
        value: 'ADDR[:NBD[:AGENT]]',
        description:
          'what servers are told to connect to, when NAT or a proxy sits between (default the listen address and ports)',
      },
    },
    run: async (args) => {
      const dataDir = dataDirOption(args, '.haven-host');
      const vault = str(args, 'vault');
      const token = await enrolmentToken(args);
      const listen = (str(args, 'replication-listen') ?? '0.0.0.0:9443').match(/^(.*):(\d+)$/);
      if (!listen)
        throw new HavenError('bad_request', '--replication-listen must be HOST:PORT', {
          field: 'replication-listen',
        });
      const { shareGroup } = await shareGroupOption(args);
      const serverListen = str(args, 'server-listen');
      const serverAdvertise = str(args, 'server-advertise');
      if (serverAdvertise !== undefined && serverListen === undefined) {
        throw new HavenError('bad_request', '--server-advertise needs --server-listen', {
          field: 'server-advertise',
        });
      }
      const host = await startHost({
        dataDir,
        ...(shareGroup ? { share: { group: shareGroup, root: dataDir } } : {}),
        ...libvirtOption(args),
        replicationListen: { host: listen[1]!.replace(/^\[|\]$/g, ''), port: Number(listen[2]) },
        ...(str(args, 'replication-advertise')
          ? { replicationAdvertise: str(args, 'replication-advertise')! }
          : {}),
        // Disk images may only be attached from these folders (default DATA/images).
        ...(Array.isArray(args.values.storage) ? { storageFolders: args.values.storage.map(String) } : {}),
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
        ...(serverListen === undefined
          ? {}
          : {
              servers: {
                listen: { ...SERVER_PORTS, ...serverAddressOption(serverListen, 'server-listen') },
                ...(serverAdvertise === undefined
                  ? {}
                  : { advertise: serverAdvertiseOption(serverAdvertise) }),
              },
            }),
        log: (line) => process.stderr.write(`${line}\n`),
      });
      const { identity } = host.agent;
      process.stdout.write(
        `${JSON.stringify({ hostId: identity.hostId, name: identity.name, replicationAddress: host.dataPath.replicationAddress, serverEndpoint: endpointLine(host.dataPath.serverEndpoint) })}\n`,
      );
      return runUntilSignal(host.stop);
    },
  },
];

/** `ADDR[:NBDPORT[:AGENTPORT]]` (IPv6 in brackets): the address and whichever ports are given. */
export function serverAddressOption(
  text: string,
  field: string,
): { host: string; nbdPort?: number; agentPort?: number } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(?::(\d{1,5}))?$/.exec(text);
  const ports = [match?.[2], match?.[3]].map((p) => (p === undefined ? undefined : Number(p)));
  if (!match || ports.some((p) => p !== undefined && (p < 1 || p > 65535))) {
    throw new HavenError(
      'bad_request',
      `--${field} '${text.slice(0, 80)}' is not ADDR[:NBDPORT[:AGENTPORT]] (ports 1-65535)`,
      {
        field,
      },
    );
  }
  return {
    host: match[1]!.replace(/^\[|\]$/g, ''),
    ...(ports[0] === undefined ? {} : { nbdPort: ports[0] }),
    ...(ports[1] === undefined ? {} : { agentPort: ports[1] }),
  };
}

/** `--server-advertise ADDR[:NBD[:AGENT]]`: what servers are told to connect to (ports default to the bound ones). */
export function serverAdvertiseOption(text: string): {
  address: string;
  nbdPort?: number;
  agentPort?: number;
} {
  const { host, ...ports } = serverAddressOption(text, 'server-advertise');
  return { address: host, ...ports };
}

/** The endpoint without its CA certificate, for one line of output. */
function endpointLine(endpoint: ServerEndpoint | null): Omit<ServerEndpoint, 'caCertPem'> | null {
  if (endpoint === null) return null;
  const { caCertPem: _ca, ...rest } = endpoint;
  return rest;
}

/**
 * The one-time enrolment token: from --token-file or HAVEN_ENROL_TOKEN, so it
 * does not show in `ps`; --token still works for a quick local try.
 */
async function enrolmentToken(args: CommandArgs): Promise<string | undefined> {
  const file = str(args, 'token-file');
  if (file !== undefined) return (await readSecretFile(file, 'token-file')).trim();
  return str(args, 'token') ?? (process.env.HAVEN_ENROL_TOKEN?.trim() || undefined);
}
