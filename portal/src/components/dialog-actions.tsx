import type { ReactNode } from 'react';
import type { ApiError } from '../api-client.ts';
import { ErrorMessage } from './error-message.tsx';

/** The foot of a form dialog: the refusal, if any, then Cancel and the submit button (`children` is its label). */
export function DialogActions({
  error,
  onCancel,
  disabled,
  children,
}: {
  error: ApiError | undefined;
  onCancel: () => void;
  disabled: boolean;
  children: ReactNode;
}) {
  return (
    <>
      <ErrorMessage error={error} />
      <div className="dialog-actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="primary" disabled={disabled}>
          {children}
        </button>
      </div>
    </>
  );
}
