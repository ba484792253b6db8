import { readFile } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { DiskService, listJournalRecords } from '../../disk/index.ts';
import { HavenError } from '../../errors/index.ts';
import { createSparseImage, parseSize } from '../../storage/index.ts';
import { type Command, integer, positional, required, str } from '../command.ts';
import { printTable, stdoutOutput } from '../output.ts';
import { runUntilSignal } from './vault-commands.ts';

/** 'HOST:PORT' or '[V6]:PORT' → address. */
function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) {
    throw new HavenError('bad_request', `--listen: '${text}' is not HOST:PORT (e.g. 127.0.0.1:10809)`, {
      field: 'listen',
    });
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

export const diskCommands: Command[] = [
  {
    name: 'disk serve',
    summary:
      'Serve a raw image over NBD, journaling every write: --image FILE, or a journal-only mirror target: --sink --size 10G --journal DIR (SIGUSR1: the mirror is ready / cut a recovery point); (--socket PATH or --listen HOST:PORT --tls-cert F --tls-key F --tls-ca F) [--export NAME] [--journal DIR] [--journal-capacity 1G] [--memory 256M]; TCP clients must present a certificate signed by --tls-ca (--insecure-listen serves TCP to anyone); prints {"uri": ...} when ready, serves until SIGINT/SIGTERM',
    options: {
      image: { type: 'string' },
      sink: { type: 'boolean' },
      size: { type: 'string' },
      export: { type: 'string' },
      journal: { type: 'string' },
      'journal-capacity': { type: 'string' },
      socket: { type: 'string' },
      listen: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      'insecure-listen': { type: 'boolean' },
      memory: { type: 'string' },
    },
    run: async (args) => {
      const sink = args.values.sink === true;
      const image = sink ? undefined : required(args, 'image');
      const size = str(args, 'size');
      if (sink !== (size !== undefined) || (sink && str(args, 'image') !== undefined)) {
        throw new HavenError('bad_request', '--sink takes --size and --journal instead of --image', {
          field: sink ? 'size' : 'sink',
        });
      }
      const socket = str(args, 'socket');
      const listen = str(args, 'listen');
      if ((socket === undefined) === (listen === undefined)) {
        throw new HavenError('bad_request', 'give either --socket PATH or --listen HOST:PORT', {
          field: 'socket',
        });
      }
      const cert = str(args, 'tls-cert');
      const key = str(args, 'tls-key');
      const ca = str(args, 'tls-ca');
      if ((cert === undefined) !== (key === undefined) || (cert !== undefined && listen === undefined)) {
        throw new HavenError('bad_request', '--tls-cert and --tls-key go together, with --listen', {
          field: 'tls-cert',
        });
      }
      if (ca !== undefined && cert === undefined) {
        throw new HavenError('bad_request', '--tls-ca needs --tls-cert and --tls-key', { field: 'tls-ca' });
      }
      const memory = str(args, 'memory');
      const name = str(args, 'export') ?? 'disk';
      const capacity = str(args, 'journal-capacity');
      const service = await DiskService.start({
        ...(socket === undefined ? {} : { socket }),
        ...(listen === undefined ? {} : { listen: parseListen(listen) }),
        ...(cert !== undefined && key !== undefined
          ? {
              tls: {
                cert: await readFile(cert),
                key: await readFile(key),
                ...(ca === undefined ? {} : { ca: await readFile(ca) }),
              },
            }
          : {}),
        insecureListen: args.values['insecure-listen'] === true,
        ...(memory === undefined ? {} : { memoryBytes: parseSize(memory) }),
        defaultExport: name,
      });
      let info: Awaited<ReturnType<DiskService['attach']>>;
      try {
        info = await service.attach(name, {
          ...(image === undefined ? {} : { imagePath: image }),
          ...(size === undefined ? {} : { sink: { sizeBytes: parseSize(size) } }),
          ...(str(args, 'journal') === undefined && !sink ? {} : { journalDir: required(args, 'journal') }),
          ...(capacity === undefined ? {} : { journalCapacityBytes: parseSize(capacity) }),
        });
      } catch (e) {
        await service.close();
        throw e;
      }
      process.stdout.write(
        `${JSON.stringify({
          uri: info.uri,
          export: info.name,
          image: info.imagePath,
          ...(info.sink === null ? {} : { sink: info.sink }),
          journal: info.journalDir,
          sizeBytes: info.sizeBytes,
          recovered: info.recovered,
        })}\n`,
      );
      if (sink) {
        // Whoever runs the mirror says when it is ready, then when to cut each further point.
        process.on('SIGUSR1', () => {
          const ready = service.info(name).sink?.readySeq != null;
          (ready ? service.cutPoint(name) : service.markSinkReady(name)).then(
            (r) => process.stdout.write(`${JSON.stringify({ point: r.seq, ready: true })}\n`),
            (e: Error) => process.stderr.write(`haven disk serve: no point cut: ${e.message}\n`),
          );
        });
      }
      return runUntilSignal(() => service.close());
    },
  },
  {
    name: 'disk journal',
    summary:
      'List a write journal (sequence, time, kind, offset, length, data checksum, marker): --journal DIR [--from SEQ]',
    options: { journal: { type: 'string' }, from: { type: 'string' }, json: { type: 'boolean' } },
    run: async (args) => {
      const dir = required(args, 'journal');
      const from = integer(str(args, 'from'), 'from') ?? 0;
      const out = stdoutOutput(args.values.json === true);
      const rows: Record<string, unknown>[] = [];
      let first = true;
      if (out.json) out.write('[');
      for await (const r of listJournalRecords(dir, from)) {
        const row = {
          seq: r.seq,
          time: new Date(r.timeMs).toISOString(),
          kind: r.kind,
          offset: r.offset,
          length: r.length,
          crc32: r.data === undefined ? null : crc32(r.data),
          markerType: r.marker?.type ?? null,
          markerId: r.marker?.id ?? null,
          markerLabel: r.marker?.label ?? null,
        };
        // Journals can be large: JSON is streamed a record per line.
        if (out.json) {
          out.write(`${first ? '' : ','}\n${JSON.stringify(row)}`);
          first = false;
        } else rows.push(row);
      }
      if (out.json) out.write('\n]\n');
      else
        printTable(out, rows, ['seq', 'time', 'kind', 'offset', 'length', 'crc32', 'markerType', 'markerId']);
      return 0;
    },
  },
  {
    name: 'disk create',
    summary: 'Create a sparse raw disk image: --size 10G (refuses to overwrite a file)',
    usage: 'FILE',
    options: { size: { type: 'string' }, json: { type: 'boolean' } },
    run: async (args) => {
      const path = positional(args, 0, 'FILE');
      const sizeBytes = parseSize(required(args, 'size'));
      await createSparseImage(path, sizeBytes);
      process.stdout.write(`${JSON.stringify({ path, sizeBytes })}\n`);
      return 0;
    },
  },
];
