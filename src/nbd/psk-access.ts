/**
 * How stock NBD clients reach an export served with TLS-PSK: libnbd
 * (nbdinfo, nbdcopy) takes the PSK file in the URI, qemu (qemu-img) a
 * `tls-creds-psk` object naming the folder that holds it as `keys.psk`.
 * Both read the same file: one `identity:hexkey` line.
 */
import { join } from 'node:path';

export interface PskExport {
  /** nbds://IDENTITY@HOST:PORT/EXPORT */
  uri: string;
  identity: string;
}

/** The file name qemu's tls-creds-psk looks for in its `dir`. */
export const PSK_FILE_NAME = 'keys.psk';

export function pskFileLine(identity: string, keyHex: string): string {
  return `${identity}:${keyHex}\n`;
}

/** The URI libnbd tools take (`nbdinfo URI`, `nbdcopy URI out.raw`). */
export function libnbdUri(exp: PskExport, pskDir: string): string {
  return `${exp.uri}?tls-psk-file=${join(pskDir, PSK_FILE_NAME)}`;
}

/** The arguments that make qemu-img open the export (`qemu-img info ARGS`; `convert` with `--image-opts`). */
export function qemuImgArgs(exp: PskExport, pskDir: string): string[] {
  const url = new URL(exp.uri);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const exportName = decodeURIComponent(url.pathname.slice(1));
  return [
    '--object',
    `tls-creds-psk,id=haven-psk,endpoint=client,dir=${pskDir},username=${exp.identity}`,
    '--image-opts',
    `driver=nbd,server.type=inet,server.host=${host},server.port=${url.port},export=${exportName},tls-creds=haven-psk`,
  ];
}
