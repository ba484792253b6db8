import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ApiClient } from '../../client/api-client.ts';
import { type AccessView, type ViewClosedReason, viewClosedInWords } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { libnbdUri, PSK_FILE_NAME, type PskExport, pskFileLine, qemuImgArgs } from '../../nbd/psk-access.ts';
import { formatBytes, formatDuration, parseDuration } from '../../text/human-units.ts';
import type { OpenedAccessView } from '../../vault/point-access.ts';
import {
  type Command,
  type CommandArgs,
  type OptionSpec,
  positionalRef,
  required,
  str,
  vaultCommand,
} from '../command.ts';
import { fitLine } from '../job-progress.ts';
import { type Output, printJson } from '../output.ts';
import { type ExportFormat, exportQcow2, exportRaw } from '../point-export.ts';
import { recoveryPoint, resolvePointOption } from './lifecycle-commands.ts';
import { localTime } from './machine-summary.ts';

const pointOption: OptionSpec = {
  point: {
    type: 'string',
    value: 'POINT',
    description:
      'latest, latest-processed, latest-app-consistent, or a point as haven machines points prints it (or the start of one; default latest-processed)',
  },
};

/** A view, opened by the vault on the machine's replica host, with its key written where NBD clients read it. */
interface LocalView {
  view: OpenedAccessView;
  /** The folder holding keys.psk (mode 0700 / 0600): qemu-img names the folder, libnbd the file. */
  pskDir: string;
  exports: Array<PskExport & { diskId: string; sizeBytes: number; unixUri: string }>;
  close(): Promise<void>;
}

async function openLocalView(
  client: ApiClient,
  args: CommandArgs,
  body: { writable: boolean; expiresInSeconds: number },
): Promise<LocalView> {
  const machine = await positionalRef(client, args, 0, 'machine', 'machines');
  const { view } = await client.post<{ view: OpenedAccessView }>(
    `/machines/${encodeURIComponent(machine)}/views`,
    { recoveryPoint: recoveryPoint(await resolvePointOption(client, [machine], args)), ...body },
  );
  const pskDir = await mkdtemp(join(tmpdir(), 'haven-view-'));
  await writeFile(join(pskDir, PSK_FILE_NAME), pskFileLine(view.psk.identity, view.psk.keyHex), {
    mode: 0o600,
  });
  let closed = false;
  return {
    view,
    pskDir,
    exports: view.disks.map((d) => ({ ...d, identity: view.psk.identity })),
    close: async () => {
      if (closed) return;
      closed = true;
      await rm(pskDir, { recursive: true, force: true });
      await client.delete(`/views/${encodeURIComponent(view.id)}`).catch((error: unknown) => {
        // Already expired or closed: nothing left to end.
        if (!(error instanceof HavenError && error.code === 'not_found')) throw error;
      });
    },
  };
}

function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function describeView(out: Output, local: LocalView): void {
  const { view } = local;
  const until = Math.max(0, Math.round((Date.parse(view.expiresAt) - Date.now()) / 1000));
  out.write(
    `View ${view.id} of ${view.machineName} at ${localTime(view.pointTime)}, ${view.writable ? 'writable (writes are dropped when it closes; the replica never changes)' : 'read-only'}, until ${localTime(view.expiresAt)} (${formatDuration(until)})\n`,
  );
  for (const exp of local.exports) {
    out.write(`\n  ${exp.diskId}  ${formatBytes(exp.sizeBytes)}\n    ${libnbdUri(exp, local.pskDir)}\n`);
    out.write(`    nbdinfo ${quote(libnbdUri(exp, local.pskDir))}\n`);
    out.write(`    qemu-img info ${qemuImgArgs(exp, local.pskDir).map(quote).join(' ')}\n`);
    const socket = new URL(exp.unixUri.replace(/^nbd\+unix:/, 'http:')).searchParams.get('socket');
    if (socket !== null && existsSync(socket)) out.write(`    on this host, without TLS: ${exp.unixUri}\n`);
  }
  out.write(
    `\nThe key is in ${join(local.pskDir, PSK_FILE_NAME)} until the view closes. Ctrl-C closes it.\n`,
  );
}

/** How often `haven view` asks the vault whether the view is still open. */
const VIEW_POLL_MS = 1000;

/** `haven view`'s exit code when the view ended under it (not stopped by its opener, not expired). */
export const VIEW_ENDED_UNDER_IT = 3;

/** The ends the operator asked for: Ctrl-C (or closing it with the same token) and --expires. */
function endedAsAsked(reason: ViewClosedReason): boolean {
  return reason.kind === 'stopped' || reason.kind === 'expired';
}

/**
 * Resolves when the process is asked to stop ('stopped'), or with the
 * vault's reason when the view closes (expired, closed elsewhere, its host
 * no longer serves it).
 */
function untilStoppedOrClosed(client: ApiClient, id: string): Promise<ViewClosedReason | 'stopped'> {
  return new Promise((done, fail) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: ViewClosedReason | 'stopped' | Error) => {
      clearTimeout(timer);
      timer = undefined;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (result instanceof Error) fail(result);
      else done(result);
    };
    const onSignal = () => finish('stopped');
    const poll = () => {
      timer = setTimeout(async () => {
        try {
          const { view } = await client.get<{ view: AccessView }>(`/views/${encodeURIComponent(id)}`);
          if (timer === undefined) return;
          if (view.closedReason !== null) finish(view.closedReason);
          else poll();
        } catch (error) {
          if (timer !== undefined) finish(error as Error);
        }
      }, VIEW_POLL_MS);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    poll();
  });
}

function exportFormat(args: CommandArgs): ExportFormat {
  const format = str(args, 'format') ?? 'raw';
  if (format !== 'raw' && format !== 'qcow2') {
    throw new HavenError('bad_request', `--format must be raw or qcow2, not '${format}'`, {
      field: 'format',
    });
  }
  return format;
}

export const viewCommands: Command[] = [
  vaultCommand({
    name: 'view',
    summary:
      "Open a recovery point as NBD exports (nbdinfo, qemu-img, nbdcopy read them) until Ctrl-C or it expires; TLS with the view's own key",
    usage: 'MACHINE',
    options: {
      ...pointOption,
      writable: {
        type: 'boolean',
        description: 'let clients write: a copy-on-write overlay, dropped when the view closes',
      },
      expires: {
        type: 'string',
        value: 'DURATION',
        description: 'close the view after this long (default 1h)',
      },
    },
    examples: [
      'haven view web-01 --point latest',
      'haven view web-01 --point disk0@42 --writable --expires 15m',
    ],
    exitCodes: [
      {
        code: 0,
        meaning: 'the view ended as asked: Ctrl-C, or it expired',
      },
      {
        code: VIEW_ENDED_UNDER_IT,
        meaning:
          'the view ended under it: closed by another token, or its host no longer serves it (the reason is printed; with --json as closedReason)',
      },
    ],
    run: async (args, { client, out }) => {
      const expires = parseDuration(str(args, 'expires') ?? '1h', 'expires');
      const local = await openLocalView(client, args, {
        writable: args.values.writable === true,
        expiresInSeconds: Math.round(expires),
      });
      let ended: ViewClosedReason | 'stopped';
      try {
        // One line, printed as soon as the view is open: a script reads it and goes on.
        if (out.json)
          out.write(`${JSON.stringify({ ...local.view, pskFile: join(local.pskDir, PSK_FILE_NAME) })}\n`);
        else describeView(out, local);
        ended = await untilStoppedOrClosed(client, local.view.id);
        if (ended === 'stopped') {
          if (!out.json) out.write('Closing the view.\n');
        } else if (!out.json) {
          out.write(`The view closed: ${viewClosedInWords(ended)}.\n`);
        }
      } finally {
        await local.close();
      }
      if (ended === 'stopped') {
        // Ctrl-C: the operator's own end, whatever the vault recorded (the close just made, as a rule).
        if (out.json) {
          const { view } = await client.get<{ view: AccessView }>(
            `/views/${encodeURIComponent(local.view.id)}`,
          );
          out.write(`${JSON.stringify({ id: view.id, closedReason: view.closedReason })}\n`);
        }
        return 0;
      }
      if (out.json) out.write(`${JSON.stringify({ id: local.view.id, closedReason: ended })}\n`);
      return endedAsAsked(ended) ? 0 : VIEW_ENDED_UNDER_IT;
    },
  }),
  vaultCommand({
    name: 'export',
    summary:
      'Copy a recovery point of a disk to a file here (raw: sparse; qcow2: needs qemu-img), with progress; the size is checked',
    usage: 'MACHINE',
    options: {
      ...pointOption,
      out: { type: 'string', value: 'FILE', description: 'the file to write (replaced)' },
      format: { type: 'string', value: 'raw|qcow2', description: 'raw (default) or qcow2' },
      disk: { type: 'string', value: 'DISK', description: 'which disk, when the machine has more than one' },
    },
    examples: [
      'haven export web-01 --point latest --out web-01.raw',
      'haven export web-01 --point latest-app-consistent --disk disk1 --out disk1.qcow2 --format qcow2',
    ],
    run: async (args, { client, out }) => {
      const file = resolve(required(args, 'out'));
      const format = exportFormat(args);
      const local = await openLocalView(client, args, { writable: false, expiresInSeconds: 86400 });
      try {
        const wanted = str(args, 'disk');
        const exp =
          wanted === undefined && local.exports.length === 1
            ? local.exports[0]
            : local.exports.find((e) => e.diskId === wanted);
        if (exp === undefined) {
          throw new HavenError(
            'bad_request',
            `--disk: machine '${local.view.machineName}' has disks ${local.exports.map((e) => e.diskId).join(', ')}; name one${wanted === undefined ? '' : ` (not '${wanted}')`}`,
            { field: 'disk' },
          );
        }
        const tty = process.stderr.isTTY === true;
        const say = (line: string) =>
          process.stderr.write(tty ? `\r${fitLine(line, process.stderr.columns)}\x1b[K` : `${line}\n`);
        let lastPercent = -1;
        if (format === 'raw') {
          const done = await exportRaw(exp, Buffer.from(local.view.psk.keyHex, 'hex'), file, (p) => {
            const percent = Math.floor((p.doneBytes / Math.max(1, p.totalBytes)) * 100);
            if (!tty && percent < lastPercent + 10 && p.doneBytes < p.totalBytes) return;
            lastPercent = percent;
            say(
              `exporting ${exp.diskId}: ${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)} (${percent}%), ${formatBytes(p.dataBytes)} of data`,
            );
          });
          if (tty) process.stderr.write('\n');
          const summary = { file, format, diskId: exp.diskId, pointId: local.view.pointId, ...done };
          if (out.json) printJson(out, summary);
          else
            out.write(
              `Exported ${exp.diskId} of ${local.view.machineName} at ${localTime(local.view.pointTime)} to ${file}: ${formatBytes(done.totalBytes)}, ${formatBytes(done.dataBytes)} of data (the rest holes)\n`,
            );
        } else {
          await exportQcow2(exp, local.pskDir, file, exp.sizeBytes, (t) => process.stderr.write(t));
          const summary = {
            file,
            format,
            diskId: exp.diskId,
            pointId: local.view.pointId,
            totalBytes: exp.sizeBytes,
          };
          if (out.json) printJson(out, summary);
          else
            out.write(
              `Exported ${exp.diskId} of ${local.view.machineName} at ${localTime(local.view.pointTime)} to ${file} (qcow2, ${formatBytes(exp.sizeBytes)} virtual)\n`,
            );
        }
      } finally {
        await local.close();
      }
      return 0;
    },
  }),
];
