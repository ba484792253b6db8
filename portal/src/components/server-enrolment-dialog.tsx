import { type FormEvent, useState } from 'react';
import type { Machine } from '../../../src/domain/model.ts';
import type { ServerEnrolmentIssued } from '../../../src/vault/servers/server-onboarding.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { useSession } from '../session.tsx';
import { Dialog } from './dialog.tsx';
import { DialogActions } from './dialog-actions.tsx';
import { ServerCommands } from './server-commands.tsx';

/** New enrolment of a server (operator): a new one-time token and its commands; the server's earlier tokens stop working. */
export function ServerEnrolmentDialog({ machine, onClose }: { machine: Machine; onClose: () => void }) {
  const { api } = useSession();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const [issued, setIssued] = useState<ServerEnrolmentIssued>();

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      setIssued(
        await api.post<ServerEnrolmentIssued>(`/servers/${encodeURIComponent(machine.id)}/enrolment`, {}),
      );
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog title={`New enrolment of ${machine.name}`} onClose={onClose} wide>
      {issued ? (
        <>
          <ServerCommands name={machine.name} enrolment={issued} />
          <div className="dialog-actions">
            <button type="button" className="primary" onClick={onClose}>
              Done
            </button>
          </div>
        </>
      ) : (
        <form onSubmit={submit}>
          <p>
            Issues a new one-time token for the server's agent, valid for 24 hours, and the commands to run on
            the server with it. Tokens issued earlier for {machine.name} stop working.
            {machine.server?.enrolledAt ? ' The agent enrolled already: enrol again only to replace it.' : ''}
          </p>
          <DialogActions error={error} onCancel={onClose} disabled={busy}>
            {busy ? 'Issuing…' : 'Issue new enrolment'}
          </DialogActions>
        </form>
      )}
    </Dialog>
  );
}
