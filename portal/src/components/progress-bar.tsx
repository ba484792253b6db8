/** A labelled progress bar (the native element: screen readers announce it). */
export function ProgressBar({ value, label, state }: { value: number; label: string; state?: string }) {
  const v = Math.max(0, Math.min(100, Math.round(value)));
  return (
    <span className="progress" data-state={state}>
      <progress max={100} value={v} aria-label={label} />
      <span className="progress-text">{v}%</span>
    </span>
  );
}
