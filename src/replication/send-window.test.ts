import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeCursor } from '../testing/sender-link.fixture.ts';
import { NO_RECORDS, SendWindow } from './send-window.ts';
import { Signal } from './signal.ts';

function windowOf(cursor: FakeCursor, windowBytes = 100, now = () => 0) {
  const errors: Error[] = [];
  const signal = new Signal();
  const window = new SendWindow({
    cursor,
    windowBytes,
    signal,
    onTrimError: (e) => errors.push(e),
    now,
  });
  return { window, errors, signal };
}

const records = (lastSeq: number, recordBytes: number, lastTimeMs = lastSeq * 100) => ({
  lastSeq,
  lastTimeMs,
  recordBytes,
});

test('a frame always fits an empty window; the next waits until an ack frees room', async () => {
  const { window } = windowOf(new FakeCursor());
  await window.waitForRoom(150, () => {});
  window.add(150, records(3, 100));
  let roomy = false;
  const room = window
    .waitForRoom(10, () => {})
    .then(() => {
      roomy = true;
    });
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(roomy, false);
  window.onAck({ frames: 1, durableSeq: 3 });
  await room;
  assert.equal(window.isEmpty, true);
});

test('waiting for room ends when the check throws', async () => {
  const { window, signal } = windowOf(new FakeCursor());
  window.add(90, NO_RECORDS);
  let closed = false;
  const waiting = window.waitForRoom(20, () => {
    if (closed) throw new Error('closed');
  });
  closed = true;
  signal.notify();
  await assert.rejects(waiting, /closed/);
});

test('acks trim the journal through the durable sequence, never past what was written', async () => {
  const cursor = new FakeCursor();
  const { window } = windowOf(cursor);
  window.add(10, records(4, 50));
  window.add(10, records(12, 50));
  window.onAck({ frames: 2, durableSeq: 12 });
  await window.settled();
  assert.deepEqual(cursor.events, ['trim 9']);
  assert.equal(window.ackedSeq, 12);
  assert.equal(window.ackedTimeMs, 1200);
});

test('a record batch counts as replicated only once durable', async () => {
  const { window } = windowOf(new FakeCursor());
  window.add(10, records(5, 50));
  window.onAck({ frames: 1, durableSeq: 4 });
  await window.settled();
  assert.equal(window.ackedSeq, 4);
  assert.equal(window.ackedTimeMs, null);
});

test('acknowledged steps run before the journal is trimmed past them', async () => {
  const cursor = new FakeCursor();
  const { window } = windowOf(cursor);
  window.add(10, {
    ...NO_RECORDS,
    onAck: async () => {
      cursor.events.push('sync complete');
    },
  });
  window.onAck({ frames: 1, durableSeq: 6 });
  await window.settled();
  assert.deepEqual(cursor.events, ['sync complete', 'trim 6']);
});

test('acks that arrive while a trim runs share the next trim, after the steps acknowledged before it', async () => {
  const cursor = new FakeCursor();
  cursor.status.writtenSeq = 100;
  const trim = cursor.trimThrough.bind(cursor);
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  cursor.trimThrough = async (seq) => {
    await trim(seq);
    await gate;
  };
  const { window } = windowOf(cursor, 1000);
  const syncStep = { ...NO_RECORDS, onAck: async () => void cursor.events.push('sync complete') };
  for (const frame of [
    records(1, 10),
    records(2, 10),
    records(3, 10),
    syncStep,
    records(4, 10),
    records(5, 10),
  ]) {
    window.add(10, frame);
  }
  window.onAck({ frames: 1, durableSeq: 1 });
  await new Promise((r) => setTimeout(r, 10));
  // The trim through 1 is running; these arrive meanwhile.
  for (const [frames, durableSeq] of [
    [2, 2],
    [3, 3],
    [4, 3],
    [5, 4],
    [6, 5],
  ] as const) {
    window.onAck({ frames, durableSeq });
  }
  release();
  await window.settled();
  assert.deepEqual(cursor.events, ['trim 1', 'sync complete', 'trim 5']);
});

test('resume trims to the receiver durable sequence; trim failures are reported', async () => {
  const cursor = new FakeCursor();
  const { window, errors } = windowOf(cursor);
  window.resume(2);
  await window.settled();
  assert.deepEqual(cursor.events, ['trim 2']);
  cursor.trimThrough = async () => {
    throw new Error('disk full');
  };
  window.resume(5);
  await window.settled();
  assert.deepEqual(
    errors.map((e) => e.message),
    ['disk full'],
  );
});

test('a reset forgets frames in flight: frames are counted per connection', async () => {
  const { window } = windowOf(new FakeCursor());
  window.add(10, records(1, 50));
  window.onAck({ frames: 1, durableSeq: 1 });
  window.add(10, records(2, 50));
  window.reset();
  assert.equal(window.isEmpty, true);
  window.add(10, records(3, 50));
  window.onAck({ frames: 1, durableSeq: 3 });
  assert.equal(window.isEmpty, true);
  assert.equal(window.ackedSeq, 3);
  await window.drained(() => {});
});

test('bytes pending leave out acknowledged batches the journal still holds', async () => {
  const cursor = new FakeCursor();
  const { window } = windowOf(cursor);
  window.add(10, records(3, 300));
  window.onAck({ frames: 1, durableSeq: 3 });
  await window.settled();
  assert.equal(window.pendingBytes(), 700);
  cursor.status.firstSeq = 4;
  cursor.status.usedBytes = 200;
  assert.equal(window.pendingBytes(), 200);
});

test('throughput averages acknowledged record bytes over the last seconds', () => {
  let now = 10_000;
  const { window } = windowOf(new FakeCursor(), 100, () => now);
  window.add(10, records(1, 1000));
  window.onAck({ frames: 1, durableSeq: 1 });
  assert.equal(window.throughputBytesPerSec(), 1000);
  now += 2000;
  window.add(10, records(2, 3000));
  window.onAck({ frames: 2, durableSeq: 2 });
  assert.equal(window.throughputBytesPerSec(), 2000);
  now += 6000;
  assert.equal(window.throughputBytesPerSec(), 0);
});
