import { join } from 'node:path';
import { DEMO_MACHINE } from '../../app/demo-machine.ts';
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
import { runUntilSignal } from './vault-commands.ts';

export const upCommands: Command[] = [
  {
    name: 'up',
    summary:
      'Run a vault with two local hosts, "primary" and "recovery" (the embedded default); --libvirt URI: the hosts drive libvirt (e.g. qemu:///system) instead of the built-in QEMU driver; --share-group GROUP: libvirt\'s QEMU (user libvirt-qemu, in GROUP) opens the hosts\' disk and view sockets; --storage DIR...: folders disk images may be attached from and recovered disks are written to (default DATA/images)',
    options: {
      data: { type: 'string' },
      port: { type: 'string' },
      'control-port': { type: 'string' },
      'no-demo': { type: 'boolean' },
      'share-group': { type: 'string' },
      libvirt: { type: 'string' },
      storage: { type: 'string', multiple: true },
    },
    run: async (args) => {
      const dataDir = dataDirOption(args, '.haven');
      const port = integer(str(args, 'port'), 'port') ?? 8440;
      const libvirt = libvirtOption(args);
      // The demo machine runs under the built-in QEMU driver: with libvirt, the operator's domains are imported instead.
      const demo = args.values['no-demo'] !== true && libvirt.libvirt === undefined;
      const embedded = await startEmbedded({
        dataDir,
        port,
        ...controlPortOption(args),
        ...(await shareGroupOption(args)),
        ...libvirt,
        ...(Array.isArray(args.values.storage) ? { storageFolders: args.values.storage.map(String) } : {}),
        demo,
        ...(process.env.HAVEN_DATABASE_URL ? { databaseUrl: process.env.HAVEN_DATABASE_URL } : {}),
        log: (line) => process.stderr.write(`${line}\n`),
      }).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
          throw new HavenError('conflict', `Port ${port} is in use; pass --port N`);
        }
        throw error;
      });
      process.stdout.write(
        [
          `Haven ${embedded.vault.context.version} is up.`,
          `  vault:  ${embedded.vault.url}  (health: ${embedded.vault.url}/api/v1/health)`,
          `  portal: ${embedded.portal.state === 'unavailable' ? `not built: ${embedded.portal.reason}` : `${embedded.vault.url}/`}`,
          `  hosts:  ${embedded.hosts.map((h) => h.agent.identity.name).join(', ')}`,
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
