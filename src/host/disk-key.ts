/**
 * A replicated disk's key, `<machineId>/<diskId>`: what the replication
 * protocol and the replica store name a disk by. Machine and disk ids hold
 * no '/', so the key splits back unambiguously.
 */
export const diskKeyOf = (machineId: string, diskId: string): string => `${machineId}/${diskId}`;

/** Whether the key names one of the machine's disks. */
export const isDiskOf = (diskKey: string, machineId: string): boolean => diskKey.startsWith(`${machineId}/`);

/** The disk id within the machine the key belongs to. */
export const diskIdOf = (diskKey: string): string => diskKey.slice(diskKey.indexOf('/') + 1);

/** The machine the key belongs to. */
export const machineIdOf = (diskKey: string): string => diskKey.slice(0, diskKey.indexOf('/'));
