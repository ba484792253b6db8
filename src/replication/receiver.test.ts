import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startRig } from '../testing/replication-test-fixture.ts';

test('the receiver hands on the next record batch while an earlier append is still being stored, and acknowledges in order', async () => {
  const rig = await startRig({ sizeBytes: 4 << 20, sender: { batchBytes: 16 << 10 } });
  try {
    await rig.caughtUp();
    const append = rig.sink.append.bind(rig.sink);
    let calls = 0;
    let overlapped = false;
    let secondCall: () => void = () => {};
    const second = new Promise<void>((resolve) => {
      secondCall = resolve;
    });
    rig.sink.append = async (diskKey, records) => {
      calls++;
      if (calls === 1) {
        // Held until the receiver calls again: it must not wait for this one to be stored.
        const stored = append(diskKey, records);
        overlapped = await Promise.race([
          second.then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), 3000)),
        ]);
        return stored;
      }
      if (calls === 2) secondCall();
      return append(diskKey, records);
    };
    for (let i = 0; i < 64; i++)
      await rig.source.write((i % 64) * 65536, Buffer.alloc(65536, i + 1), { fua: false });
    await rig.source.flush();
    await rig.caughtUp();
    assert.ok(overlapped, 'the second append waited for the first one to be stored');
    assert.ok(rig.sender.status(rig.diskKey).lastAckedSeq >= rig.source.journal.status.writtenSeq);
    assert.deepEqual(await rig.replicaBytes(), await rig.sourceBytes());
  } finally {
    await rig.close();
  }
});
