import { type Machine, type MachineKind, machineKindOf } from '../../src/domain/model.ts';

const KIND_TEXT: Record<MachineKind, string> = {
  vm: 'VM',
  libvirt: 'libvirt domain',
  server: 'physical server',
};

/** A machine's kind as the portal shows it wherever it shows one. */
export function machineKindText(machine: Pick<Machine, 'importedFrom' | 'server'>): string {
  return KIND_TEXT[machineKindOf(machine)];
}
