/**
 * Sharing with a hypervisor that runs as another user (libvirt's QEMU runs as
 * `libvirt-qemu`): what it must open (the NBD sockets of disks and views) gets
 * a dedicated group, 0660, and the folders on the way to it are group
 * searchable (0710, the socket's own folder 0750). Nothing is shared with
 * other users; without a share group, everything stays owner only.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, stat } from 'node:fs/promises';
import { dirname, relative, sep } from 'node:path';
import { HavenError } from '../errors/index.ts';

export interface ShareGroup {
  name: string;
  gid: number;
}

/** The group named NAME (through NSS, as `getent group` sees it); refused with the field when unknown. */
export async function lookupShareGroup(name: string): Promise<ShareGroup> {
  const line = await new Promise<string>((resolve) =>
    execFile('getent', ['group', name], (error, stdout) => resolve(error ? '' : stdout.trim())),
  );
  const gid = Number(line.split(':')[2]);
  if (line === '' || !Number.isInteger(gid)) {
    throw new HavenError(
      'validation_failed',
      `share group '${name}' does not exist on this host: create it (groupadd ${name}) and add the hypervisor's user to it`,
      { field: 'share-group', group: name },
    );
  }
  return { name, gid };
}

/**
 * Lets `group` open the socket at `path`: the socket 0660, its folder 0750,
 * and every folder from `root` down to it 0710 (search only: nothing listed).
 */
export async function shareSocket(path: string, root: string, group: ShareGroup): Promise<void> {
  const folder = dirname(path);
  const steps = relative(root, folder)
    .split(sep)
    .filter((part) => part !== '' && part !== '.');
  let current = root;
  const folders = [root];
  for (const part of steps) {
    current = `${current}${sep}${part}`;
    folders.push(current);
  }
  for (const dir of folders) {
    await chown(dir, -1, group.gid);
    await chmod(dir, dir === folder ? 0o750 : 0o710);
  }
  await chown(path, -1, group.gid);
  await chmod(path, 0o660);
}

/**
 * Refuses, naming the folder and what to change, when a member of `group`
 * (that is not its owner) could not reach `path`: a folder on the way that
 * lets neither the group nor others search it. Without this the hypervisor
 * fails much later, on its first connection, with "Permission denied".
 */
export async function checkGroupCanReach(path: string, group: ShareGroup): Promise<void> {
  const folders: string[] = [];
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    folders.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of folders) {
    const info = await stat(dir);
    const groupSearch = info.gid === group.gid && (info.mode & 0o010) !== 0;
    if (groupSearch || (info.mode & 0o001) !== 0) continue;
    throw new HavenError(
      'validation_failed',
      `share group '${group.name}' cannot reach '${path}': folder '${dir}' (mode ${(info.mode & 0o777).toString(8)}) lets neither the group nor others search it. Let them search it (chmod o+x '${dir}') or keep the data directory elsewhere (--data DIR)`,
      { field: 'share-group', group: group.name, folder: dir },
    );
  }
}
