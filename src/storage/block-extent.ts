/** A run of a disk image with one allocation state, as NBD's base:allocation context reports it. */
export interface BlockExtent {
  offset: number;
  length: number;
  /** NBD base:allocation flags: 1 = hole (unallocated), 2 = reads as zeroes. */
  flags: number;
}
