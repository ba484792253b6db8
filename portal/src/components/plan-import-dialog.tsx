import { type FormEvent, useState } from 'react';
import { type ApiError, asApiError } from '../api-client.ts';
import { navigate } from '../router.tsx';
import { useSession } from '../session.tsx';
import { Dialog } from './dialog.tsx';
import { DialogActions } from './dialog-actions.tsx';
import type { PlanFormat } from './plan-export-dialog.tsx';

/** JSON documents open with a brace; anything else is taken for YAML (the radio buttons can say otherwise). */
export function guessPlanFormat(content: string, fileName?: string): PlanFormat {
  if (fileName && /\.ya?ml$/i.test(fileName)) return 'yaml';
  if (fileName && /\.json$/i.test(fileName)) return 'json';
  return content.trimStart().startsWith('{') ? 'json' : 'yaml';
}

/** Imports a plan exported as JSON or YAML (pasted or read from a file here in the browser). */
export function PlanImportDialog({ onClose }: { onClose: () => void }) {
  const { api } = useSession();
  const [content, setContent] = useState('');
  const [format, setFormat] = useState<PlanFormat>('json');
  const [replace, setReplace] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const read = (text: string, fileName?: string) => {
    setContent(text);
    setFormat(guessPlanFormat(text, fileName));
  };
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
  const contentRefused = error?.details.field === 'content';
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
              if (file) read(await file.text(), file.name);
            }}
          />
        </div>
        <div className="field">
          <label htmlFor="import-content">
            Plan document <span className="hint">or paste it here: JSON or YAML</span>
          </label>
          <textarea
            id="import-content"
            rows={10}
            className="code"
            value={content}
            aria-invalid={contentRefused}
            onChange={(e) => setContent(e.target.value)}
            onPaste={(e) => {
              // What is pasted replaces the whole document when the box was empty; its format follows it.
              if (content.trim() === '') setFormat(guessPlanFormat(e.clipboardData.getData('text')));
            }}
          />
        </div>
        <fieldset className="radios inline">
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
