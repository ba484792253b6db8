import type { BlockBackend, BlockExtent, WriteOptions } from '../nbd/block-backend.ts';

/**
 * A backend in front of another that passes every call through: the disk
 * service's wrappers (quiescing, a server's leg) extend it and override only
 * the calls they change.
 */
export class ForwardingBackend<Inner extends BlockBackend = BlockBackend> implements BlockBackend {
  readonly inner: Inner;

  constructor(inner: Inner) {
    this.inner = inner;
  }

  get size(): number {
    return this.inner.size;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get canTrim(): boolean {
    return this.inner.canTrim;
  }
  get canWriteZeroes(): boolean {
    return this.inner.canWriteZeroes;
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.inner.read(offset, length, into);
  }

  write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    return this.inner.write(offset, data, options);
  }

  trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    return this.inner.trim(offset, length, options);
  }

  writeZeroes(offset: number, length: number, options: WriteOptions & { mayTrim: boolean }): Promise<void> {
    return this.inner.writeZeroes(offset, length, options);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    return this.inner.blockStatus(offset, length);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
