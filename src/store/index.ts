export { openStore, type StoreLocation, sqliteFile, storeDialectOf } from './open-store.ts';
export { restoreStore } from './restore-store.ts';
export type { Database } from './schema.ts';
export type * from './store.ts';
