/**
 * Imported first by the CLI entry point: settings of the Node runtime that
 * must be made before anything else runs.
 */
import { setFlagsFromString } from 'node:v8';

/*
 * Journal appends, large reads and fdatasync share libuv's thread pool; its
 * default of 4 threads lets a few slow fdatasyncs stall every disk. Node reads
 * this when the pool is first used, so it must be set before any asynchronous
 * file access.
 */
process.env.UV_THREADPOOL_SIZE ??= '16';

/*
 * Every socket read hands JavaScript a new buffer outside V8's heap. By
 * default V8 starts a full mark-compact each time such memory grew by a fixed
 * amount, whatever the heap's size: at 400 MB/s of NBD writes that was ten
 * collections a second and a fifth of the disk server's main thread. Counted
 * within the heap's global limit instead, that memory is collected with the
 * heap's own garbage (two collections instead of 44 in a 4 s write test, and
 * 40% more throughput into the journal-only sink).
 */
setFlagsFromString('--external-memory-accounted-in-global-limit');
