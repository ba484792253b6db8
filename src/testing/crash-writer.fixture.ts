/**
 * Child process for the crash test: writes through a JournaledBackend and
 * prints each acknowledged write (`ack seq offset length crc`) and flush
 * (`flush`) before going on, until it is killed.
 * Usage: node crash-writer.fixture.ts IMAGE JOURNAL_DIR SEED
 */
import { crc32 } from 'node:zlib';
import { JournaledBackend } from '../disk/journaled-backend.ts';
import { SeededRandom } from './seeded-random.ts';

const [imagePath, journalDir, seedText] = process.argv.slice(2);
const backend = await JournaledBackend.open({
  imagePath: imagePath as string,
  journalDir: journalDir as string,
  journalCapacityBytes: 1 << 30,
  journalSegmentBytes: 256 << 10,
});
const rnd = new SeededRandom(Number(seedText));
process.stdout.write('ready\n');

async function worker(): Promise<void> {
  for (;;) {
    const roll = rnd.next();
    if (roll < 0.1) {
      await backend.flush();
      process.stdout.write('flush\n');
      continue;
    }
    const length = rnd.int(1, 64) * 512;
    const offset = rnd.int(0, (backend.size - length) / 512) * 512;
    // Sequence numbers are assigned when the call is made.
    const seq = backend.journal.status.nextSeq;
    if (roll < 0.2) {
      await backend.writeZeroes(offset, length, { fua: false, mayTrim: true });
      process.stdout.write(`ack ${seq} ${offset} ${length} zero\n`);
    } else {
      const data = rnd.bytes(length);
      await backend.write(offset, data, { fua: roll > 0.95 });
      process.stdout.write(`ack ${seq} ${offset} ${length} ${crc32(data)}\n`);
    }
  }
}

await Promise.all([worker(), worker(), worker(), worker()]);
