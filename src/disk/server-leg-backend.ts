import type { WriteOptions } from '../nbd/block-backend.ts';
import { ForwardingBackend } from './forwarding-backend.ts';
import type { JournaledBackend } from './journaled-backend.ts';
import {
  MD_SB_READ_BYTES,
  MdLegTracker,
  type MdLegView,
  mdSuperblockOffset,
  parseMdSuperblock,
} from './md-superblock.ts';

/**
 * A physical server's NBD leg of its md raid1 (metadata 1.0): a journaled
 * staging image whose flushes become recovery points only while md holds the
 * leg in sync. Every change that touches the superblock's place (the end of
 * the device) is read back once it landed and followed by an MdLegTracker.
 * While the leg is not in sync (md's initial resync or a rebuild copies
 * blocks in no order a crash could produce), an NBD FLUSH makes everything
 * durable but appends no flush record; when the leg becomes in sync, one
 * flush record is cut before the superblock write that said so is
 * acknowledged: the first point. Whether a flush record is appended is
 * decided at the instant it would be, so no point precedes that superblock.
 */
export class ServerLegBackend extends ForwardingBackend<JournaledBackend> {
  readonly #tracker = new MdLegTracker();
  readonly #sbStart: number | null;
  /** Superblock read-backs in arrival order, so the tracker sees md's superblocks in the order md wrote them. */
  #observing: Promise<void> = Promise.resolve();
  #connections = 0;

  private constructor(inner: JournaledBackend) {
    super(inner);
    this.#sbStart = mdSuperblockOffset(inner.size);
  }

  /** Wraps an opened staging image; the superblock it already holds gives md's last word (no points until a new one). */
  static async open(inner: JournaledBackend): Promise<ServerLegBackend> {
    const leg = new ServerLegBackend(inner);
    await leg.#readSuperblock();
    leg.#tracker.disconnected();
    return leg;
  }

  /** What md last wrote of the leg, and whether its flushes are points now. */
  get view(): MdLegView {
    return this.#tracker.view;
  }

  /** Whether a server's NBD client is connected to the leg now. */
  get connected(): boolean {
    return this.#connections > 0;
  }

  connectionOpened(): void {
    this.#connections++;
  }

  connectionClosed(): void {
    this.#connections = Math.max(0, this.#connections - 1);
    this.#tracker.disconnected();
  }

  /*
   * FUA: the kernel's NBD client sends a journalling filesystem's commit
   * block (REQ_PREFLUSH | REQ_FUA, which md passes to both legs) as a FLUSH
   * followed by a FUA write. A point cut at the FLUSH alone would end just
   * before each commit, so the newest point would always lack the last
   * transaction the server made durable. A FUA change is therefore made
   * durable by a flush after it, which is a point like any other (while the
   * leg is in sync).
   */
  override async write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    await this.inner.write(offset, data, { ...options, fua: false });
    await this.#afterChange(offset, data.length);
    if (options.fua) await this.flush();
  }

  override async trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    await this.inner.trim(offset, length, { ...options, fua: false });
    await this.#afterChange(offset, length);
    if (options.fua) await this.flush();
  }

  override async writeZeroes(
    offset: number,
    length: number,
    options: WriteOptions & { mayTrim: boolean },
  ): Promise<void> {
    await this.inner.writeZeroes(offset, length, { ...options, fua: false });
    await this.#afterChange(offset, length);
    if (options.fua) await this.flush();
  }

  /** NBD FLUSH: always a durability barrier; a recovery point only while the leg is in sync. */
  override flush(): Promise<void> {
    return this.inner.flush({ point: () => this.#tracker.view.pointsAllowed });
  }

  /**
   * The server's agent saw the array whole and idle at md event `events`
   * (see MdLegTracker.confirm): in line with the superblock read-backs, and
   * the first point when this makes the leg in sync.
   */
  confirmInSync(events: bigint): Promise<void> {
    return this.#inOrder(async () => {
      this.#tracker.confirm(events);
    });
  }

  async #afterChange(offset: number, length: number): Promise<void> {
    const start = this.#sbStart;
    if (start === null || offset >= start + MD_SB_READ_BYTES || offset + length <= start) return;
    await this.#inOrder(() => this.#readSuperblock());
  }

  /**
   * Updates the tracker after the updates before it (md's superblocks in the
   * order md wrote them); the update that makes the leg in sync cuts the
   * first point: the image holds the whole array once md said so.
   */
  #inOrder(update: () => Promise<void>): Promise<void> {
    const next = this.#observing.then(async () => {
      const before = this.#tracker.view.pointsAllowed;
      await update();
      if (!before && this.#tracker.view.pointsAllowed) await this.inner.flush();
    });
    this.#observing = next.catch(() => {});
    return next;
  }

  async #readSuperblock(): Promise<void> {
    if (this.#sbStart === null) return;
    const bytes = await this.inner.read(this.#sbStart, MD_SB_READ_BYTES);
    this.#tracker.observe(parseMdSuperblock(bytes));
  }
}
