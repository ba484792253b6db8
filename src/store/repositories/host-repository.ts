import type { Kysely, Selectable } from 'kysely';
import type { Host, HostStatus } from '../../domain/model.ts';
import { notFound } from '../../errors/index.ts';
import type { HypervisorInventory } from '../../hypervisor/hypervisor.ts';
import { affectedRows, fromJsonColumn, toJsonColumn } from '../column-codec.ts';
import { checkedWrite } from '../constraint-violation.ts';
import type { Database, HostsTable } from '../schema.ts';
import type { HostRepository } from '../store.ts';

export class KyselyHostRepository implements HostRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(host: Host, credentialHash: string): Promise<void> {
    await checkedWrite(
      'host',
      host.name,
      () =>
        this.#db
          .insertInto('hosts')
          .values({
            id: host.id,
            enrolled_at: host.enrolledAt,
            credential_hash: credentialHash,
            ...columns(host),
          })
          .execute(),
      'site',
    );
  }

  async get(id: string): Promise<Host | undefined> {
    const row = await this.#db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toHost(row);
  }

  async getByName(name: string): Promise<Host | undefined> {
    const row = await this.#db.selectFrom('hosts').selectAll().where('name', '=', name).executeTakeFirst();
    return row && toHost(row);
  }

  async list(): Promise<Host[]> {
    const rows = await this.#db.selectFrom('hosts').selectAll().orderBy('name').execute();
    return rows.map(toHost);
  }

  async credentialHash(id: string): Promise<string | undefined> {
    const row = await this.#db
      .selectFrom('hosts')
      .select('credential_hash')
      .where('id', '=', id)
      .executeTakeFirst();
    return row?.credential_hash;
  }

  /** Writes every field but the id, the enrolment time and the credential. */
  async update(host: Host): Promise<void> {
    const result = await checkedWrite(
      'host',
      host.name,
      () => this.#db.updateTable('hosts').set(columns(host)).where('id', '=', host.id).executeTakeFirst(),
      'site',
    );
    if (affectedRows(result) === 0) throw notFound('host', host.id);
  }

  async recordHeartbeat(id: string, at: string): Promise<void> {
    const result = await this.#db
      .updateTable('hosts')
      .set({ last_heartbeat_at: at })
      .where('id', '=', id)
      .executeTakeFirst();
    if (affectedRows(result) === 0) throw notFound('host', id);
  }

  async saveHypervisorInventory(id: string, inventory: HypervisorInventory, at: string): Promise<void> {
    const result = await this.#db
      .updateTable('hosts')
      .set({ hypervisor_inventory: toJsonColumn(inventory), hypervisor_inventory_at: at })
      .where('id', '=', id)
      .executeTakeFirst();
    if (affectedRows(result) === 0) throw notFound('host', id);
  }

  async hypervisorInventory(
    id: string,
  ): Promise<{ inventory: HypervisorInventory; reportedAt: string } | undefined> {
    const row = await this.#db
      .selectFrom('hosts')
      .select(['hypervisor_inventory', 'hypervisor_inventory_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row?.hypervisor_inventory || !row.hypervisor_inventory_at) return undefined;
    return {
      inventory: fromJsonColumn<HypervisorInventory>(row.hypervisor_inventory),
      reportedAt: row.hypervisor_inventory_at,
    };
  }

  async delete(id: string): Promise<void> {
    await this.#db.deleteFrom('hosts').where('id', '=', id).execute();
  }
}

function columns(host: Host) {
  return {
    name: host.name,
    site_id: host.siteId,
    status: host.status,
    replication_address: host.replicationAddress,
    replication_fingerprint: host.replicationFingerprint,
    max_protected_disks: host.maxProtectedDisks,
    capabilities: toJsonColumn(host.capabilities),
    storage_folders: toJsonColumn(host.storageFolders),
    version: host.version,
    last_heartbeat_at: host.lastHeartbeatAt,
  };
}

function toHost(row: Selectable<HostsTable>): Host {
  return {
    id: row.id,
    name: row.name,
    siteId: row.site_id,
    status: row.status as HostStatus,
    replicationAddress: row.replication_address,
    replicationFingerprint: row.replication_fingerprint,
    maxProtectedDisks: row.max_protected_disks,
    capabilities: fromJsonColumn(row.capabilities),
    storageFolders: row.storage_folders === null ? [] : fromJsonColumn(row.storage_folders),
    version: row.version,
    lastHeartbeatAt: row.last_heartbeat_at,
    enrolledAt: row.enrolled_at,
  };
}
