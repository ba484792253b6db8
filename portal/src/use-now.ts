import { useSyncExternalStore } from 'react';

/**
 * One clock for the whole portal: relative times ("3 s ago") tick with it,
 * not only when their page polls. A single timer runs while anything
 * shows a relative time, so a page of them costs one interval, not one each.
 */
const TICK_MS = 1000;
const listeners = new Set<() => void>();
let now = Date.now();
let timer: ReturnType<typeof setInterval> | undefined;

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  if (timer === undefined) {
    now = Date.now();
    timer = setInterval(() => {
      now = Date.now();
      for (const l of listeners) l();
    }, TICK_MS);
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

/** Milliseconds since the epoch, updated about every second. */
export function useNow(): number {
  return useSyncExternalStore(subscribe, () => now);
}
