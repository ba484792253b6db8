import { type FormEvent, useState } from 'react';
import type { DrillRun } from '../../../src/domain/drill.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { useSession } from '../session.tsx';
import { Dialog } from './dialog.tsx';
import { DialogActions } from './dialog-actions.tsx';
import {
  DEFAULT_DRILL_SETTINGS,
  DrillSettingsFields,
  type DrillSettingsForm,
  drillSettingsBody,
} from './drill-settings-fields.tsx';
import { problemsByField } from './field.tsx';

/** What a drill runs of: a machine, or a whole recovery plan in its order. */
export type DrillTargetRef = { kind: 'machine' | 'plan'; id: string; name: string };

/** Drill a machine or a plan now, with a schedule's settings; on success the caller follows the drill. */
export function RunDrillDialog({
  target,
  onStarted,
  onClose,
}: {
  target: DrillTargetRef;
  onStarted: (drill: DrillRun) => void;
  onClose: () => void;
}) {
  const { api } = useSession();
  const [form, setForm] = useState<DrillSettingsForm>(DEFAULT_DRILL_SETTINGS);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const started = await api.post<{ drill: DrillRun }>(
        `/${target.kind === 'plan' ? 'plans' : 'machines'}/${encodeURIComponent(target.id)}/drills`,
        drillSettingsBody(form),
      );
      onStarted(started.drill);
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };

  return (
    <Dialog title={`Run a drill of ${target.kind === 'plan' ? 'plan ' : ''}${target.name}`} onClose={onClose}>
      <form onSubmit={submit} className="operation-form" data-testid="run-drill-form">
        {target.kind === 'plan' ? (
          <p>
            Runs the plan's groups in order on the isolated test network: script actions run, manual actions
            are recorded as not performed, every machine boots and is checked, and the plan's RTO is measured.
            Everything is cleaned up; production keeps replicating.
          </p>
        ) : (
          <p>
            Boots a recovery point on the isolated test network, runs the checks, records the results and
            cleans up. Production keeps replicating.
          </p>
        )}
        <DrillSettingsFields
          form={form}
          onChange={(patch) => setForm((f) => ({ ...f, ...patch }))}
          errors={problemsByField(error)}
          idPrefix="run-drill"
        />
        <DialogActions error={error} onCancel={onClose} disabled={busy}>
          {busy ? 'Starting…' : 'Run drill'}
        </DialogActions>
      </form>
    </Dialog>
  );
}
