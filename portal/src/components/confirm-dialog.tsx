import { type ReactNode, useState } from 'react';
import { type ApiError, asApiError } from '../api-client.ts';
import { Dialog } from './dialog.tsx';
import { ErrorMessage } from './error-message.tsx';

/**
 * Asks before an action that cannot be undone (a delete), in the portal's
 * own dialog: it says what happens, shows progress, and keeps a refusal in
 * view instead of closing.
 */
export function ConfirmDialog({
  title,
  action,
  onConfirm,
  onClose,
  children,
}: {
  title: string;
  /** The confirming button's label, e.g. "Delete plan". */
  action: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
  children: ReactNode;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const confirm = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await onConfirm();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };
  return (
    <Dialog title={title} onClose={onClose}>
      {children}
      <ErrorMessage error={error} />
      <div className="dialog-actions">
        <button type="button" onClick={onClose}>
          {error ? 'Close' : 'Cancel'}
        </button>
        <button type="button" className="danger" disabled={busy} onClick={confirm}>
          {busy ? 'Working…' : action}
        </button>
      </div>
    </Dialog>
  );
}
