/**
 * Haven's disk server for the benchmark when `haven disk serve` is not there:
 * NbdServer + JournaledBackend (journaling on) on a unix socket. Prints
 * `ready` once listening; closes cleanly (journal synced, allocation map
 * persisted) on SIGTERM/SIGINT.
 * Usage: node bench/nbd/haven-server.ts IMAGE JOURNAL_DIR SOCKET EXPORT
 */
// Image and journal I/O run on libuv's threadpool; its default of 4 threads
// caps how many preads/pwrites are in flight. Must be set before any fs call.
process.env.UV_THREADPOOL_SIZE ??= '16';

const { JournaledBackend } = await import('../../src/disk/index.ts');
const { NbdServer } = await import('../../src/nbd/index.ts');

const [imagePath, journalDir, socketPath, exportName] = process.argv.slice(2);
if (!imagePath || !journalDir || !socketPath || !exportName) {
  process.stderr.write('usage: haven-server.ts IMAGE JOURNAL_DIR SOCKET EXPORT\n');
  process.exit(2);
}

// For experiments: HAVEN_BENCH_IO=async (always the threadpool) or sync (never).
const ioMode = process.env.HAVEN_BENCH_IO;
const io =
  ioMode === 'async'
    ? { mode: 'async' as const }
    : ioMode === 'sync'
      ? {
          slowMs: Number.POSITIVE_INFINITY,
          slowWriteMs: Number.POSITIVE_INFINITY,
          syncMaxReadBytes: Number.POSITIVE_INFINITY,
        }
      : {};
const backend = await JournaledBackend.open({
  imagePath,
  journalDir,
  io,
  // Large enough that a benchmark never overflows into bitmap mode.
  journalCapacityBytes: 64 * 2 ** 30,
});
const server = new NbdServer({ exports: { [exportName]: { backend } }, defaultExport: exportName });
await server.listen({ path: socketPath });
process.stdout.write('ready\n');

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.close();
  await backend.close();
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
