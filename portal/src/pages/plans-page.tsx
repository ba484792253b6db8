import { type FormEvent, useState } from 'react';
import type { RecoveryPlan } from '../../../src/domain/model.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { Ago } from '../components/ago.tsx';
import { Dialog } from '../components/dialog.tsx';
import { DialogActions } from '../components/dialog-actions.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { EMPTY_PLAN, PlanEditor } from '../components/plan-editor.tsx';
import { formatTime } from '../format-time.ts';
import { Link, navigate } from '../router.tsx';
import { canOperate, useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

export function PlansPage() {
  const { role } = useSession();
  const plans = useResource<{ plans: RecoveryPlan[] }>('/plans', { refreshMs: 10_000 });
  const [creating, setCreating] = useState(false);
  const [importing, setImporting] = useState(false);
  const list = plans.data?.plans ?? [];
  const operator = canOperate(role);
  return (
    <section>
      <h1>Recovery plans</h1>
      <p className="muted">
        A plan brings machines up group by group, with scripts and manual actions between the groups.
      </p>
      {operator && !creating && (
        <div className="toolbar">
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New plan
          </button>
          <button type="button" onClick={() => setImporting(true)}>
            Import…
          </button>
        </div>
      )}
      {creating && (
        <article className="card">
          <h2>New plan</h2>
          <PlanEditor
            initial={EMPTY_PLAN}
            planId={null}
            onSaved={(plan) => navigate(`/plans/${plan.id}`)}
            onCancel={() => setCreating(false)}
          />
        </article>
      )}
      {importing && <ImportDialog onClose={() => setImporting(false)} />}
      <ErrorMessage error={plans.error} />
      {plans.data && list.length === 0 && <p className="muted">No recovery plans yet.</p>}
      {list.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="plans-table">
            <thead>
              <tr>
                <th scope="col">Plan</th>
                <th scope="col">Groups</th>
                <th scope="col">Machines</th>
                <th scope="col">Actions</th>
                <th scope="col">Changed</th>
              </tr>
            </thead>
            <tbody>
              {list.map((p) => (
                <tr key={p.id} data-plan={p.name}>
                  <th scope="row">
                    <Link to={`/plans/${encodeURIComponent(p.id)}`}>{p.name}</Link>
                  </th>
                  <td data-label="Groups">{p.groups.length}</td>
                  <td data-label="Machines">{p.groups.reduce((n, g) => n + g.machineIds.length, 0)}</td>
                  <td data-label="Actions">
                    {p.groups.reduce((n, g) => n + g.before.length + g.after.length, 0)}
                  </td>
                  <td data-label="Changed" title={formatTime(p.updatedAt)}>
                    <Ago iso={p.updatedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** Imports a plan exported as JSON or YAML (pasted or read from a file here in the browser). */
function ImportDialog({ onClose }: { onClose: () => void }) {
  const { api } = useSession();
  const [content, setContent] = useState('');
  const [format, setFormat] = useState<'json' | 'yaml'>('json');
  const [replace, setReplace] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const plan = await api.post<{ id: string }>('/plans/import', { format, content, replace });
      onClose();
      navigate(`/plans/${plan.id}`);
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };
  return (
    <Dialog title="Import a recovery plan" onClose={onClose}>
      <form onSubmit={submit}>
        <div className="field">
          <label htmlFor="import-file">From a file</label>
          <input
            id="import-file"
            type="file"
            accept=".json,.yaml,.yml,application/json,application/yaml"
            onChange={async (e) => {
              const file = e.target.files?.[0];
              if (!file) return;
              setFormat(/\.ya?ml$/i.test(file.name) ? 'yaml' : 'json');
              setContent(await file.text());
            }}
          />
        </div>
        <div className="field">
          <label htmlFor="import-content">Plan document</label>
          <textarea
            id="import-content"
            rows={10}
            className="code"
            value={content}
            onChange={(e) => setContent(e.target.value)}
          />
        </div>
        <fieldset className="radios">
          <legend>Format</legend>
          {(['json', 'yaml'] as const).map((f) => (
            <label key={f}>
              <input type="radio" name="import-format" checked={format === f} onChange={() => setFormat(f)} />{' '}
              {f.toUpperCase()}
            </label>
          ))}
        </fieldset>
        <label className="check">
          <input type="checkbox" checked={replace} onChange={(e) => setReplace(e.target.checked)} /> Replace
          the plan of the same name
        </label>
        <DialogActions error={error} onCancel={onClose} disabled={busy || content.trim() === ''}>
          {busy ? 'Importing…' : 'Import'}
        </DialogActions>
      </form>
    </Dialog>
  );
}
