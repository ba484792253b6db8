import { type FileHandle, open } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import { FileIo, type FileIoPolicy, SyncBudget } from '../storage/file-io.ts';
import type { BlockBackend, BlockExtent, WriteOptions } from './block-backend.ts';

export interface FileBackendOptions {
  readOnly?: boolean;
  /** How reads and writes are run (default: synchronously while the page cache answers fast). */
  io?: FileIoPolicy;
}

/** Zeroes are written from this shared buffer, a slice at a time. */
const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

/**
 * A raw image file as a BlockBackend. Node has neither SEEK_DATA/SEEK_HOLE
 * nor fallocate, so this backend cannot find or punch holes: block status
 * reports everything as allocated (status 0, which the spec always allows),
 * TRIM is not offered and WRITE_ZEROES writes real zeroes. Allocation
 * tracking belongs to the disk service, which wraps this.
 */
export class FileBackend implements BlockBackend {
  readonly path: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly canTrim = false;
  readonly canWriteZeroes: boolean;
  readonly #fh: FileHandle;
  readonly #io: FileIo;

  private constructor(path: string, fh: FileHandle, size: number, readOnly: boolean, io: FileIo) {
    this.path = path;
    this.#fh = fh;
    this.#io = io;
    this.size = size;
    this.readOnly = readOnly;
    this.canWriteZeroes = !readOnly;
  }

  static async open(path: string, options: FileBackendOptions = {}): Promise<FileBackend> {
    const readOnly = options.readOnly === true;
    const fh = await open(path, readOnly ? 'r' : 'r+');
    try {
      const stat = await fh.stat();
      if (!stat.isFile()) throw new HavenError('validation_failed', `image '${path}' is not a regular file`);
      return new FileBackend(path, fh, stat.size, readOnly, new FileIo(fh.fd, new SyncBudget(options.io)));
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  #check(op: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new HavenError(
        'bad_request',
        `${op} at ${offset}+${length} on '${this.path}': not a valid range`,
      );
    }
    if (offset + length > this.size) {
      throw new HavenError(
        'bad_request',
        `${op} at ${offset}+${length} on '${this.path}' ends past its size ${this.size}`,
      );
    }
  }

  #writable(op: string): void {
    if (this.readOnly) {
      throw new HavenError('forbidden', `${op} on '${this.path}' refused: the image is open read-only`);
    }
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.#check('read', offset, length);
    // If the file shrank under us, what is not there reads as zeroes.
    return this.#io.readFully(offset, length, into);
  }

  async write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    this.#writable('write');
    this.#check('write', offset, data.length);
    await this.#io.writeFully(data, offset);
    if (options.fua) await this.#fh.datasync();
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.#fh.datasync();
  }

  async trim(): Promise<void> {
    throw new HavenError(
      'not_available',
      `trim on '${this.path}' is not supported by the plain file backend`,
    );
  }

  async writeZeroes(
    offset: number,
    length: number,
    options: WriteOptions & { mayTrim: boolean },
  ): Promise<void> {
    this.#writable('write zeroes');
    this.#check('write zeroes', offset, length);
    let done = 0;
    while (done < length) {
      const step = Math.min(ZERO_CHUNK.length, length - done);
      done += await this.#io.write(ZERO_CHUNK, 0, step, offset + done);
    }
    if (options.fua) await this.#fh.datasync();
  }

  async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    this.#check('block status', offset, length);
    return [{ offset, length, flags: 0 }];
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }
}
