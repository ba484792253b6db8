/**
 * Recovery points opened to NBD clients (`haven view`, `haven export`): each
 * a view on the machine's replica host, served there over TCP with TLS and a
 * pre-shared key made for it, until it expires or is closed. The key is
 * handed to the operator who opened the view, once; the vault keeps only
 * what lists the view. Views live while the vault does: the host closes them
 * when it loses the vault, so a restarted vault starts with none.
 */
import { randomBytes } from 'node:crypto';
import type { Machine, RecoveryPoint } from '../domain/model.ts';
import { type RecoveryPointRequest, selectRecoveryPoint } from '../domain/recovery-point-selection.ts';
import { HavenError } from '../errors/index.ts';
import { hostServices } from './jobs/lifecycle-job.ts';
import { requireReplicaHost } from './replica-host.ts';
import type { VaultContext } from './vault-context.ts';

export const DEFAULT_VIEW_TTL_SECONDS = 3600;
export const MAX_VIEW_TTL_SECONDS = 7 * 86400;

export interface AccessViewDisk {
  diskId: string;
  sizeBytes: number;
  /** nbds://IDENTITY@HOST:PORT/EXPORT: TLS with the view's key only. */
  uri: string;
  /** The same export on the recovery host's Unix socket, for a client running there. */
  unixUri: string;
}

export interface AccessView {
  id: string;
  machineId: string;
  machineName: string;
  pointId: string;
  pointTime: string;
  hostId: string;
  writable: boolean;
  openedBy: string;
  openedAt: string;
  expiresAt: string;
  disks: AccessViewDisk[];
}

/** What opening a view answers: the view and, this once, its key. */
export interface OpenedAccessView extends AccessView {
  psk: { identity: string; keyHex: string };
}

export type ViewPointRequest = Exclude<RecoveryPointRequest, { members: unknown }>;

export class PointAccess {
  readonly #vault: VaultContext;
  readonly #views = new Map<string, AccessView>();

  constructor(vault: VaultContext) {
    this.#vault = vault;
  }

  async open(
    machine: Machine,
    request: {
      point: ViewPointRequest;
      catalog: readonly RecoveryPoint[];
      writable: boolean;
      ttlSeconds: number;
      openedBy: string;
    },
  ): Promise<OpenedAccessView> {
    const hostId = requireReplicaHost(machine);
    if (!this.#vault.hosts.isConnected(hostId)) {
      throw new HavenError(
        'conflict',
        `the replica host of machine '${machine.name}' is not connected; a view can be opened when it is`,
        { machineId: machine.id, hostId },
      );
    }
    const { point } = selectRecoveryPoint(request.catalog, machine, request.point);
    const id = `view-${randomBytes(6).toString('hex')}`;
    const keyHex = randomBytes(32).toString('hex');
    // Wall time, not the vault's clock: the host's timer ends the view.
    const now = new Date();
    const expiresAt = new Date(now.getTime() + request.ttlSeconds * 1000).toISOString();
    const opened = await hostServices(this.#vault, hostId).replica.openView({
      machineId: machine.id,
      pointId: point.id,
      writable: request.writable,
      viewId: id,
      access: { identity: id, keyHex, expiresAt },
    });
    const view: AccessView = {
      id,
      machineId: machine.id,
      machineName: machine.name,
      pointId: point.id,
      pointTime: point.time,
      hostId,
      writable: request.writable,
      openedBy: request.openedBy,
      openedAt: now.toISOString(),
      expiresAt,
      disks: opened.disks.map((d) => ({
        diskId: d.diskId,
        sizeBytes: d.sizeBytes,
        uri: d.accessUri ?? '',
        unixUri: d.nbdUri,
      })),
    };
    this.#views.set(id, view);
    return { ...view, psk: { identity: id, keyHex } };
  }

  /** The open views (of one machine when given), expired ones forgotten. */
  list(machineId?: string): AccessView[] {
    this.#forgetExpired();
    return [...this.#views.values()].filter((v) => machineId === undefined || v.machineId === machineId);
  }

  get(id: string): AccessView {
    this.#forgetExpired();
    const view = this.#views.get(id);
    if (!view) {
      throw new HavenError(
        'not_found',
        `view '${id}' is not open (closed, expired, or the vault restarted)`,
        {
          kind: 'view',
          id,
        },
      );
    }
    return view;
  }

  /** Ends the export on the host (a writable view's writes are dropped). */
  async close(id: string): Promise<void> {
    const view = this.get(id);
    this.#views.delete(id);
    if (this.#vault.hosts.isConnected(view.hostId)) {
      await hostServices(this.#vault, view.hostId).replica.closeView({ viewId: id, discardWrites: true });
    }
  }

  #forgetExpired(): void {
    const now = Date.now();
    for (const [id, view] of this.#views) if (Date.parse(view.expiresAt) <= now) this.#views.delete(id);
  }
}
