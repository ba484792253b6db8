/**
 * QEMU's active mirror of one disk of a running machine into a journal-only
 * sink (Haven's disk service): what the host's mirror service asks of a
 * hypervisor driver to protect a machine it does not serve. Every guest
 * write reaches the sink before it completes once the job is synced; reads
 * never leave QEMU.
 */

/** Where the mirror writes: an export of the host's disk service on its Unix socket. */
export interface MirrorSink {
  socket: string;
  exportName: string;
}

export interface ArmMirrorParams {
  domain: string;
  /** The guest's device name of the disk (e.g. 'vda'). */
  target: string;
  sink: MirrorSink;
  /**
   * Block size of the background copy: whole blocks of this size reach the
   * sink aligned, so a re-arm can compare them with the replica's hashes.
   */
  granularityBytes: number;
  /**
   * How long QEMU holds the guest's writes while the sink is away (an agent
   * restart) before the job fails; after a failure the guest carries on
   * unprotected until Haven arms the mirror again.
   */
  reconnectDelaySeconds: number;
}

/** Haven's mirror of one disk, as QEMU reports it. */
export type MirrorJobState =
  /** No QEMU runs the domain (shut off, or not defined): nothing writes the disk. */
  | { state: 'domain-off' }
  /** QEMU runs without Haven's mirror on this disk (never armed, or a new QEMU process). */
  | { state: 'absent' }
  /** The background copy runs (or is paused by Haven): the sink has no consistent state yet. */
  | { state: 'copying'; doneBytes: number; totalBytes: number; paused: boolean }
  /** Everything QEMU wrote is in the sink, and every new write reaches it before it completes. */
  | { state: 'synced' }
  /** The job ended on an error (the sink was away longer than the reconnect delay, or refused a write). */
  | { state: 'failed'; reason: string };

export interface ActiveMirrorDriver {
  mirrorState(params: { domain: string; target: string }): Promise<MirrorJobState>;
  /**
   * Starts the mirror with a full background copy (the sink filters what the
   * replica already holds). Leftovers of an ended job on the disk are removed
   * first; a job still running is refused (disarm it first).
   */
  armMirror(params: ArmMirrorParams): Promise<void>;
  /**
   * Pauses or resumes the background copy (the guest's own writes keep
   * reaching the sink either way): flow control while the sink's journal
   * holds more than the sender has shipped.
   */
  setMirrorPaused(params: { domain: string; target: string; paused: boolean }): Promise<void>;
  /** Ends the job (the guest keeps its own disk) and removes what Haven added to the domain. Idempotent. */
  disarmMirror(params: { domain: string; target: string }): Promise<void>;
}

/** Names of what Haven adds to a domain for one disk: its job, the sink's node, the job's filter. */
export function mirrorNodeNames(target: string): { job: string; sink: string; filter: string } {
  return { job: `haven-mirror-${target}`, sink: `haven-sink-${target}`, filter: `haven-top-${target}` };
}
