export type { BlockBackend, BlockExtent, WriteOptions } from './block-backend.ts';
export { BlockState, NbdErrno, TransmissionFlag } from './constants.ts';
export { FileBackend, type FileBackendOptions } from './file-backend.ts';
export { MemoryBackend, type MemoryBackendOptions } from './memory-backend.ts';
export { DEFAULT_NBD_MEMORY_BYTES, type MemoryBudgetOptions, NbdMemoryBudget } from './memory-budget.ts';
export {
  NbdClient,
  type NbdClientOptions,
  type NbdClientTlsOptions,
  type NbdExportInfo,
  type NbdListedExport,
} from './nbd-client.ts';
export { nbdErrnoName, toNbdErrno } from './nbd-errors.ts';
export {
  type NbdExport,
  type NbdListenAddress,
  NbdServer,
  type NbdServerCertTls,
  type NbdServerOptions,
  type NbdServerPskTls,
  type NbdServerStats,
  type NbdServerTlsOptions,
} from './nbd-server.ts';
export { removeStaleSocket } from './stale-socket.ts';
