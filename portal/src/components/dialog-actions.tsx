import type { ReactNode } from 'react';
import type { ApiError } from '../api-client.ts';
import { ErrorMessage } from './error-message.tsx';

/**
 * The foot of a form dialog: the refusal, if any, then Cancel (`cancelText`)
 * and the submit button (`children` is its label; `danger` for an operation
 * that cannot be taken back).
 */
export function DialogActions({
  error,
  onCancel,
  disabled,
  children,
  cancelText = 'Cancel',
  danger = false,
}: {
  error: ApiError | undefined;
  onCancel: () => void;
  disabled: boolean;
  children: ReactNode;
  cancelText?: string;
  danger?: boolean;
}) {
  return (
    <>
      <ErrorMessage error={error} />
      <div className="dialog-actions">
        <button type="button" onClick={onCancel}>
          {cancelText}
        </button>
        <button type="submit" className={danger ? 'danger' : 'primary'} disabled={disabled}>
          {children}
        </button>
      </div>
    </>
  );
}
