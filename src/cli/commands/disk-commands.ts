import { readFile } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { DiskService, listJournalRecords } from '../../disk/index.ts';
import { HavenError } from '../../errors/index.ts';
import { createSparseImage } from '../../storage/index.ts';
import { parseSize } from '../../text/human-units.ts';
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
      'Serve a raw image over NBD, journaling every write, or be a journal-only mirror target (SIGUSR1: the mirror is ready / cut a recovery point); prints {"uri": ...} when ready, serves until SIGINT/SIGTERM',
    examples: [
      'haven disk serve --image web.img --journal web.journal --socket /run/haven/web.sock',
      'haven disk serve --sink --size 10G --journal mirror.journal --listen 0.0.0.0:10809 --tls-cert h.crt --tls-key h.key --tls-ca ca.crt',
    ],
    options: {
      image: { type: 'string', value: 'FILE', description: 'the raw image to serve' },
      sink: {
        type: 'boolean',
        description: 'no image: a mirror target that only journals (with --size and --journal)',
      },
      size: { type: 'string', value: 'SIZE', description: "--sink: the disk's size (e.g. 10G)" },
      export: { type: 'string', value: 'NAME', description: 'NBD export name (default disk)' },
      journal: { type: 'string', value: 'DIR', description: 'the write journal' },
      'journal-capacity': {
        type: 'string',
        value: 'SIZE',
        description: 'journal size before the oldest records go (e.g. 1G)',
      },
      socket: { type: 'string', value: 'PATH', description: 'serve on this Unix socket' },
      listen: {
        type: 'string',
        value: 'HOST:PORT',
        description: 'serve on TCP (clients need a certificate signed by --tls-ca)',
      },
      'tls-cert': { type: 'string', value: 'FILE', description: "the server's certificate (PEM)" },
      'tls-key': { type: 'string', value: 'FILE', description: "the server's private key (PEM)" },
      'tls-ca': { type: 'string', value: 'FILE', description: 'CA that signs the client certificates' },
      'insecure-listen': { type: 'boolean', description: 'serve TCP to anyone, without TLS' },
      memory: { type: 'string', value: 'SIZE', description: 'write buffer memory (e.g. 256M)' },
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
    summary: 'List a write journal (sequence, time, kind, offset, length, data checksum, marker)',
    examples: ['haven disk journal --journal web.journal --from 1200'],
    options: {
      journal: { type: 'string', value: 'DIR', description: 'the journal to list' },
      from: { type: 'string', value: 'SEQ', description: 'start at this sequence number' },
      json: { type: 'boolean', description: 'one JSON record per line' },
    },
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
        printTable(out, rows, [
          { header: 'Seq', value: (r) => r.seq },
          { header: 'Time', value: (r) => r.time },
          { header: 'Kind', value: (r) => r.kind },
          { header: 'Offset', value: (r) => r.offset },
          { header: 'Length', value: (r) => r.length },
          { header: 'CRC-32', value: (r) => r.crc32 },
          { header: 'Marker', value: (r) => r.markerType },
          { header: 'Marker id', value: (r) => r.markerId },
        ]);
      return 0;
    },
  },
  {
    name: 'disk create',
    summary: 'Create a sparse raw disk image (refuses to overwrite a file)',
    usage: 'FILE',
    examples: ['haven disk create web.img --size 10G'],
    options: {
      size: { type: 'string', value: 'SIZE', description: "the image's size (e.g. 10G, 512M)" },
      json: { type: 'boolean', description: 'print JSON (it always does)' },
    },
    run: async (args) => {
      const path = positional(args, 0, 'FILE');
      const sizeBytes = parseSize(required(args, 'size'));
      await createSparseImage(path, sizeBytes);
      process.stdout.write(`${JSON.stringify({ path, sizeBytes })}\n`);
      return 0;
    },
  },
];
