/**
 * Recovery points opened to NBD clients (`haven view`, `haven export`): each
 * a view on the machine's replica host, served there over TCP with TLS and a
 * pre-shared key made for it, until it expires or is closed.
 *
 * Views are kept in the state database, so a restarted vault lists them and
 * reconciles them with their host when it reconnects. The key is stored
 * nowhere: it is handed once to the operator who opened the view, and the
 * host holds it in memory only, as long as it serves the view (a database
 * backup never carries a working key; a restarted host serves none of its
 * views, and the vault records them closed).
 */
import { randomBytes } from 'node:crypto';
import { type AccessView, type Machine, type RecoveryPoint, viewClosedInWords } from '../domain/model.ts';
import { type RecoveryPointRequest, selectRecoveryPoint } from '../domain/recovery-point-selection.ts';
import { HavenError } from '../errors/index.ts';
import { hostServices } from './host-call.ts';
import { requireReplicaHost } from './replica-host.ts';
import type { VaultContext } from './vault-context.ts';

export const DEFAULT_VIEW_TTL_SECONDS = 3600;
export const MAX_VIEW_TTL_SECONDS = 7 * 86400;
/** Short enough to see a view expire in a test; a client connects within seconds of opening. */
export const MIN_VIEW_TTL_SECONDS = 5;

/** What opening a view answers: the view and, this once, its key. */
export interface OpenedAccessView extends AccessView {
  psk: { identity: string; keyHex: string };
}

export type ViewPointRequest = Exclude<RecoveryPointRequest, { members: unknown }>;

export class PointAccess {
  readonly #vault: VaultContext;

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
    const services = hostServices(this.#vault, hostId);
    const opened = await services.replica.openView({
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
      closedAt: null,
      closedReason: null,
    };
    try {
      await this.#vault.store.accessViews.add(view);
    } catch (error) {
      // Not recorded, so never listed nor reconciled: not served either.
      await services.replica.closeView({ viewId: id, discardWrites: true }).catch(() => {});
      throw error;
    }
    return { ...view, psk: { identity: id, keyHex } };
  }

  /** The open views (of one machine when given); expired ones are recorded closed first. */
  async list(machineId?: string): Promise<AccessView[]> {
    const open = await this.#vault.store.accessViews.list({
      open: true,
      ...(machineId === undefined ? {} : { machineId }),
    });
    const closed = await closeExpired(this.#vault, open);
    return open.filter((v) => !closed.has(v.id));
  }

  /** A view, open or closed (then with when and why). */
  async get(id: string): Promise<AccessView> {
    const view = await this.#vault.store.accessViews.get(id);
    if (!view) throw new HavenError('not_found', `view '${id}' does not exist`, { kind: 'view', id });
    await closeExpired(this.#vault, [view]);
    return (await this.#vault.store.accessViews.get(id)) ?? view;
  }

  /** Ends the export on the host (a writable view's writes are dropped). */
  async close(id: string, closedBy: string): Promise<void> {
    const view = await this.get(id);
    if (view.closedAt !== null) {
      throw new HavenError(
        'not_found',
        `view '${id}' is not open: it closed at ${view.closedAt} (${view.closedReason === null ? 'closed' : viewClosedInWords(view.closedReason)}); only an open view can be closed`,
        { kind: 'view', id, closedAt: view.closedAt },
      );
    }
    if (this.#vault.hosts.isConnected(view.hostId)) {
      await hostServices(this.#vault, view.hostId).replica.closeView({ viewId: id, discardWrites: true });
    }
    // A host away now serves the view until it expires or reconnects: reconciliation ends it then.
    await this.#vault.store.accessViews.close(id, new Date().toISOString(), {
      kind: closedBy === view.openedBy ? 'stopped' : 'deleted',
      by: closedBy,
    });
  }
}

/**
 * Reconciles the open views of a host that has just (re)connected: a view
 * the host still serves is kept; one it no longer has, or one past its
 * expiry, is recorded closed with the reason (and ended on the host).
 */
export async function reconcileViews(vault: VaultContext, hostId: string): Promise<void> {
  const open = await vault.store.accessViews.list({ open: true, hostId });
  const expired = await closeExpired(vault, open);
  const replica = hostServices(vault, hostId).replica;
  for (const view of open) {
    if (expired.has(view.id)) {
      await replica.closeView({ viewId: view.id, discardWrites: true });
      continue;
    }
    const served = await replica.viewInfo({ viewId: view.id }).then(
      () => true,
      (error: unknown) => {
        if (error instanceof HavenError && error.code === 'not_found') return false;
        throw error;
      },
    );
    if (!served) {
      await vault.store.accessViews.close(view.id, new Date().toISOString(), { kind: 'host-restarted' });
    }
  }
}

/** Records the views past their expiry closed (their host's timer ended them); returns their ids. */
async function closeExpired(vault: VaultContext, views: readonly AccessView[]): Promise<Set<string>> {
  const now = Date.now();
  const expired = views.filter((v) => v.closedAt === null && Date.parse(v.expiresAt) <= now);
  for (const v of expired) await vault.store.accessViews.close(v.id, v.expiresAt, { kind: 'expired' });
  return new Set(expired.map((v) => v.id));
}
