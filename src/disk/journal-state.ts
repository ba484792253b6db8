import { HavenError } from '../errors/index.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { readOptionalText } from '../storage/optional-file.ts';

/** What the journal must remember across restarts beside its segments. */
export interface JournalState {
  /** Every record up to this sequence has been durably stored by the consumer. */
  consumedSeq: number;
  /** `bitmap` once the journal overflowed, until a resync begins. */
  mode: 'journal' | 'bitmap';
  /** Last sequence journaled before the latest overflow. */
  overflowSeq: number | null;
  /** Counts overflows, so a resync plan made before a new overflow is refused. */
  overflowCount: number;
  /** Why the latest overflow happened. */
  overflowReason: OverflowReason | null;
}

/** `capacity`: the journal reached its configured capacity; `filesystem-full`: its file system had no room left. */
export type OverflowReason = 'capacity' | 'filesystem-full';

export const initialJournalState: JournalState = {
  consumedSeq: 0,
  mode: 'journal',
  overflowSeq: null,
  overflowCount: 0,
  overflowReason: null,
};

export async function readJournalState(path: string): Promise<JournalState> {
  const text = await readOptionalText(path);
  if (text === null) return { ...initialJournalState };
  try {
    const parsed = JSON.parse(text) as Partial<JournalState>;
    if (typeof parsed.consumedSeq !== 'number' || (parsed.mode !== 'journal' && parsed.mode !== 'bitmap')) {
      throw new Error('missing fields');
    }
    return { ...initialJournalState, ...parsed };
  } catch (e) {
    throw new HavenError('internal', `journal state file '${path}' is unreadable: ${(e as Error).message}`, {
      path,
    });
  }
}

export function writeJournalState(path: string, state: JournalState): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify(state)}\n`);
}
