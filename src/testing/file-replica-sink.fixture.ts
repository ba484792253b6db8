/**
 * Test double of the replica store: per disk a raw image file plus a state
 * file, crash-safe like the real one must be (the image is synced before the
 * state file that says what it holds is replaced atomically). It applies
 * records in place (no recovery points) and counts what it applied, so tests
 * can prove that nothing was applied twice and nothing was skipped.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { JournalRecord } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import type { ReplicaSink } from '../replication/replica-sink.ts';

interface DiskState {
  sizeBytes: number;
  durableSeq: number;
  /** Sequence ranges applied, in order: overlapping ranges would be records applied twice. */
  applied: [number, number][];
  sync: { id: string; fromSeq: number; kind: string } | null;
  /** Nothing was ever written: zero ranges of an initial sync need no writing. */
  fresh: boolean;
  syncDataBytes: number;
  syncZeroBytes: number;
  /** Kinds of every sync begun, in order. */
  syncKinds: string[];
  /** Records received again at or below the durable sequence (ignored, as the seam says). */
  ignored: number;
}

export class FileReplicaSink implements ReplicaSink {
  readonly dir: string;
  /** Called after a flush record was applied (before it is durable), with the image path. */
  onFlush: ((diskKey: string, seq: number, imagePath: string) => Promise<void>) | null = null;
  readonly #states = new Map<string, DiskState>();
  readonly #images = new Map<string, FileHandle>();
  /** Appends run one at a time in call order (the receiver hands on a batch before the last one is stored). */
  #appends: Promise<unknown> = Promise.resolve();

  constructor(dir: string) {
    this.dir = dir;
  }

  imagePath(diskKey: string): string {
    return join(this.dir, `${encodeURIComponent(diskKey)}.img`);
  }

  #statePath(diskKey: string): string {
    return join(this.dir, `${encodeURIComponent(diskKey)}.json`);
  }

  async state(diskKey: string): Promise<DiskState> {
    let st = this.#states.get(diskKey);
    if (st === undefined) {
      try {
        st = JSON.parse(await readFile(this.#statePath(diskKey), 'utf8')) as DiskState;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        throw new HavenError('not_found', `replica '${diskKey}' does not exist`);
      }
      this.#states.set(diskKey, st);
    }
    return st;
  }

  async #image(diskKey: string): Promise<FileHandle> {
    let fh = this.#images.get(diskKey);
    if (fh === undefined) {
      fh = await open(this.imagePath(diskKey), 'r+');
      this.#images.set(diskKey, fh);
    }
    return fh;
  }

  async #save(diskKey: string, st: DiskState): Promise<void> {
    await (await this.#image(diskKey)).datasync();
    const path = this.#statePath(diskKey);
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(st));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  }

  async ensureDisk(diskKey: string, sizeBytes: number): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    try {
      const st = await this.state(diskKey);
      if (st.sizeBytes !== sizeBytes) {
        throw new HavenError('conflict', `replica '${diskKey}' has ${st.sizeBytes} bytes, not ${sizeBytes}`);
      }
      return;
    } catch (e) {
      if (!(e instanceof HavenError) || e.code !== 'not_found') throw e;
    }
    const fh = await open(this.imagePath(diskKey), 'w+');
    await fh.truncate(sizeBytes);
    this.#images.set(diskKey, fh);
    const st: DiskState = {
      sizeBytes,
      durableSeq: -1,
      applied: [],
      sync: null,
      fresh: true,
      syncDataBytes: 0,
      syncZeroBytes: 0,
      syncKinds: [],
      ignored: 0,
    };
    await this.#save(diskKey, st);
    this.#states.set(diskKey, st);
  }

  async durableSequence(diskKey: string): Promise<number> {
    return (await this.state(diskKey)).durableSeq;
  }

  append(diskKey: string, records: JournalRecord[]): Promise<number> {
    const run = this.#appends.then(() => this.#append(diskKey, records));
    this.#appends = run.catch(() => {});
    return run;
  }

  async #append(diskKey: string, records: JournalRecord[]): Promise<number> {
    const st = await this.state(diskKey);
    if (st.sync !== null) {
      throw new HavenError(
        'conflict',
        `replica '${diskKey}' is in sync ${st.sync.id}: records come after its completion`,
      );
    }
    const fresh = records.filter((r) => r.seq > st.durableSeq);
    st.ignored += records.length - fresh.length;
    if (fresh.length === 0) return st.durableSeq;
    const first = fresh[0] as JournalRecord;
    if (first.seq !== st.durableSeq + 1) {
      throw new HavenError(
        'conflict',
        `replica '${diskKey}' holds records through ${st.durableSeq}; record ${first.seq} would leave a gap`,
      );
    }
    const fh = await this.#image(diskKey);
    let expect = first.seq;
    for (const r of fresh) {
      if (r.seq !== expect++)
        throw new HavenError('conflict', `records of '${diskKey}' are not in sequence at ${r.seq}`);
      if (r.kind === 'write' && r.data !== undefined) {
        await fh.write(r.data, 0, r.data.length, r.offset);
      } else if (r.kind === 'trim' || r.kind === 'zero') {
        await writeZeroes(fh, r.offset, r.length);
      } else if (r.kind === 'flush' && this.onFlush !== null) {
        await this.onFlush(diskKey, r.seq, this.imagePath(diskKey));
      }
    }
    const last = (fresh.at(-1) as JournalRecord).seq;
    const prev = st.applied.at(-1);
    if (prev !== undefined && prev[1] === first.seq - 1) prev[1] = last;
    else st.applied.push([first.seq, last]);
    st.durableSeq = last;
    st.fresh = false;
    await this.#save(diskKey, st);
    return st.durableSeq;
  }

  async beginSync(
    diskKey: string,
    sync: { id: string; kind: string; fromSeq: number; regions: { offset: number; length: number }[] | null },
  ): Promise<void> {
    const st = await this.state(diskKey);
    // An interrupted sync may have written data: zero ranges must be written from now on.
    if (st.sync !== null) st.fresh = false;
    st.sync = { id: sync.id, fromSeq: sync.fromSeq, kind: sync.kind };
    st.syncKinds.push(sync.kind);
    await this.#save(diskKey, st);
  }

  writeSyncData: ReplicaSink['writeSyncData'] = async (diskKey, syncId, offset, data, length) => {
    const st = await this.state(diskKey);
    if (st.sync?.id !== syncId)
      throw new HavenError('conflict', `sync ${syncId} of '${diskKey}' is not open`);
    const fh = await this.#image(diskKey);
    if (data === null) {
      st.syncZeroBytes += length;
      if (!(st.fresh && st.sync.kind === 'initial')) await writeZeroes(fh, offset, length);
    } else {
      st.syncDataBytes += data.length;
      await fh.write(data, 0, data.length, offset);
    }
    // Sync data need not be durable one write at a time: completeSync syncs, and an interrupted sync is redone.
  };

  async completeSync(diskKey: string, syncId: string, throughSeq: number): Promise<void> {
    const st = await this.state(diskKey);
    if (st.sync?.id !== syncId)
      throw new HavenError('conflict', `sync ${syncId} of '${diskKey}' is not open`);
    void throughSeq;
    st.durableSeq = Math.max(st.durableSeq, st.sync.fromSeq - 1);
    st.sync = null;
    st.fresh = false;
    await this.#save(diskKey, st);
  }

  async read(diskKey: string, offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    await (await this.#image(diskKey)).read(buf, 0, length, offset);
    return buf;
  }

  async close(): Promise<void> {
    for (const fh of this.#images.values()) await fh.close();
    this.#images.clear();
  }
}

async function writeZeroes(fh: FileHandle, offset: number, length: number): Promise<void> {
  const zero = Buffer.alloc(Math.min(length, 1 << 20));
  for (let at = offset; at < offset + length; at += zero.length) {
    await fh.write(zero, 0, Math.min(zero.length, offset + length - at), at);
  }
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}
