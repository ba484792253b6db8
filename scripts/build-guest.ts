/**
 * Builds the test/demo guest image (or finds it cached) and prints its paths
 * as JSON. `.ci/run` calls it to warm the cache before the tests; operators
 * use it to see which kernel and initramfs `haven up` boots.
 *
 *   node scripts/build-guest.ts [--cache-dir DIR] [--variant vm|server]
 *
 * `server` is the guest that plays a physical Linux server (md raid1 over NBD).
 */
import { parseArgs } from 'node:util';
import { buildGuestImage, type GuestVariant } from '../src/guest/index.ts';

const { values } = parseArgs({ options: { 'cache-dir': { type: 'string' }, variant: { type: 'string' } } });
const VARIANTS: readonly GuestVariant[] = ['vm', 'server'];
const started = Date.now();
try {
  const variant = VARIANTS.find((v) => v === (values.variant ?? 'vm'));
  if (!variant) throw new Error(`--variant must be one of ${VARIANTS.join(', ')}, not '${values.variant}'`);
  const image = await buildGuestImage({
    cacheDir: values['cache-dir'],
    variant,
    log: (message) => process.stderr.write(`build-guest: ${message}\n`),
  });
  process.stdout.write(`${JSON.stringify({ ...image, elapsedMs: Date.now() - started }, null, 2)}\n`);
} catch (error) {
  process.stderr.write(`build-guest: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
