import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type StoreLocation } from '../store/index.ts';
import { type PostgresCluster, startPostgresCluster } from './postgres-cluster.ts';

/**
 * The two places a vault keeps its state, for suites that must pass on both:
 * a SQLite file in a temp dir, and a database in a throwaway PostgreSQL
 * cluster (started once per test file, on first use).
 */
export interface TestStores {
  dialects: readonly ('sqlite' | 'postgres')[];
  /** A fresh, empty location of that dialect. */
  location(dialect: 'sqlite' | 'postgres'): Promise<StoreLocation>;
  open(dialect: 'sqlite' | 'postgres'): ReturnType<typeof openStore>;
  cleanup(): Promise<void>;
}

export function testStores(): TestStores {
  let cluster: Promise<PostgresCluster> | null = null;
  const dirs: string[] = [];
  const location = async (dialect: 'sqlite' | 'postgres'): Promise<StoreLocation> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'haven-test-'));
    dirs.push(dataDir);
    if (dialect === 'sqlite') return { dataDir };
    cluster ??= startPostgresCluster();
    return { dataDir, databaseUrl: await (await cluster).createDatabase() };
  };
  return {
    dialects: ['sqlite', 'postgres'],
    location,
    open: async (dialect) => openStore(await location(dialect)),
    cleanup: async () => {
      if (cluster) await (await cluster).stop();
      for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    },
  };
}
