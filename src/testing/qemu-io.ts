import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** Runs `qemu-io` commands on a raw image or NBD URI, then a flush: what is written is acknowledged. */
export async function qemuIoFlushed(target: string, ...commands: string[]): Promise<void> {
  const args = ['-f', 'raw', target];
  for (const command of [...commands, 'flush']) args.push('-c', command);
  await promisify(execFile)('qemu-io', args);
}
