import { join } from 'node:path';
import { DEMO_MACHINE } from '../../app/demo-machine.ts';
import { portalBanner } from '../../app/ensure-portal-built.ts';
import { startEmbedded } from '../../app/start-embedded.ts';
import { HavenError } from '../../errors/index.ts';
import {
  type Command,
  controlPortOption,
  dataDirOption,
  integer,
  libvirtOption,
  shareGroupOption,
  str,
} from '../command.ts';
import { SERVER_PORTS, serverAddressOption, serverAdvertiseOption } from './host-command.ts';
import { runUntilSignal } from './vault-commands.ts';

export const upCommands: Command[] = [
  {
    name: 'up',
    summary: 'Run a vault with two local hosts, "primary" and "recovery" (the embedded default)',
    examples: [
      'haven up',
      'haven up --libvirt qemu:///system --share-group haven-qemu --storage /srv/images',
    ],
    options: {
      data: {
        type: 'string',
        value: 'DIR',
        description: 'state of the vault and both hosts (default .haven)',
      },
      port: { type: 'string', value: 'PORT', description: 'port of the REST API and portal (default 8440)' },
      'control-port': {
        type: 'string',
        value: 'PORT',
        description: 'port of the control channel (default: the saved one)',
      },
      'no-demo': { type: 'boolean', description: 'do not create and start the demo machine' },
      'share-group': {
        type: 'string',
        value: 'GROUP',
        description: "libvirt's QEMU (user libvirt-qemu, in GROUP) opens the hosts' disk and view sockets",
      },
      libvirt: {
        type: 'string',
        value: 'URI',
        description: 'the hosts drive libvirt (e.g. qemu:///system) instead of the built-in QEMU driver',
      },
      storage: {
        type: 'string',
        multiple: true,
        value: 'DIR',
        description:
          'a folder disk images may be attached from and recovered disks are written to (default DATA/images)',
      },
      'server-listen': {
        type: 'string',
        value: 'ADDR[:NBD[:AGENT]]',
        description: `where physical servers reach the primary host (default 127.0.0.1:${SERVER_PORTS.nbdPort}:${SERVER_PORTS.agentPort}, free ports for taken ones)`,
      },
      'server-advertise': {
        type: 'string',
        value: 'ADDR[:NBD[:AGENT]]',
        description:
          'what servers are told to connect to, when NAT or a proxy sits between (default the listen address and ports)',
      },
    },
    run: async (args) => {
      const dataDir = dataDirOption(args, '.haven');
      const port = integer(str(args, 'port'), 'port') ?? 8440;
      const libvirt = libvirtOption(args);
      // The demo machine runs under the built-in QEMU driver: with libvirt, the operator's domains are imported instead.
      const demo = args.values['no-demo'] !== true && libvirt.libvirt === undefined;
      const serverListenText = str(args, 'server-listen');
      const serverAdvertiseText = str(args, 'server-advertise');
      const serverListen = {
        ...SERVER_PORTS,
        ...(serverListenText === undefined
          ? { host: '127.0.0.1' }
          : serverAddressOption(serverListenText, 'server-listen')),
      };
      const embedded = await startEmbedded({
        dataDir,
        port,
        ...controlPortOption(args),
        ...(await shareGroupOption(args)),
        ...libvirt,
        ...(Array.isArray(args.values.storage) ? { storageFolders: args.values.storage.map(String) } : {}),
        demo,
        // The defaults give way to another process on their ports; ports the operator chose do not.
        serverListen: {
          listen: serverListen,
          freePortWhenTaken: serverListenText === undefined,
          ...(serverAdvertiseText === undefined
            ? {}
            : { advertise: serverAdvertiseOption(serverAdvertiseText) }),
        },
        ...(process.env.HAVEN_DATABASE_URL ? { databaseUrl: process.env.HAVEN_DATABASE_URL } : {}),
        log: (line) => process.stderr.write(`${line}\n`),
      }).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
          throw new HavenError('conflict', `Port ${port} is in use; pass --port N`);
        }
        throw error;
      });
      const servers = embedded.hosts[0]?.dataPath.serverEndpoint ?? null;
      const listening = embedded.hosts[0]?.dataPath.serverListen ?? null;
      process.stdout.write(
        [
          `Haven ${embedded.vault.context.version} is up.`,
          `  vault:  ${embedded.vault.url}  (health: ${embedded.vault.url}/api/v1/health)`,
          `  portal: ${portalBanner(embedded.portal, embedded.vault.url)}`,
          `  hosts:  ${embedded.hosts.map((h) => h.agent.identity.name).join(', ')}`,
          ...(servers && listening
            ? [
                `  servers: ${servers.address}, NBD port ${servers.nbdPort}, agent port ${servers.agentPort} (on primary)`,
                ...(servers.address !== listening.host ||
                servers.nbdPort !== listening.nbdPort ||
                servers.agentPort !== listening.agentPort
                  ? [`           listening on ${listening.host}:${listening.nbdPort}:${listening.agentPort}`]
                  : []),
                ...(
                  [
                    ['NBD', serverListen.nbdPort, listening.nbdPort],
                    ['agent', serverListen.agentPort, listening.agentPort],
                  ] as const
                )
                  .filter(([, wanted, bound]) => wanted !== bound)
                  .map(
                    ([what, wanted]) => `           port ${wanted} was taken: the ${what} port is a free one`,
                  ),
              ]
            : []),
          ...(embedded.demo
            ? [
                `  demo:   ${DEMO_MACHINE} (${embedded.demo.running ? 'running on primary' : 'not started: see haven machines show'}, ${embedded.demo.machine.state})`,
              ]
            : []),
          ...(libvirt.libvirt
            ? [
                `  libvirt: ${libvirt.libvirt.uri} (both hosts; no demo machine: import a domain with haven machines import primary DOMAIN)`,
              ]
            : []),
          `  token:  ${join(dataDir, 'admin.token')} (admin)`,
          `Try: haven hosts list --data ${dataDir}`,
          '',
        ].join('\n'),
      );
      return runUntilSignal(embedded.stop);
    },
  },
];
