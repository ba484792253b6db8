/**
 * Imported first by the CLI entry point. Journal appends, large reads and
 * fdatasync share libuv's thread pool; its default of 4 threads lets a few
 * slow fdatasyncs stall every disk. Node reads this when the pool is first
 * used, so it must be set before any asynchronous file access.
 */
process.env.UV_THREADPOOL_SIZE ??= '16';
