import { useEffect, useState } from 'react';
import type { PlanDocument } from '../../../src/domain/recovery-plan-validation.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { useSession } from '../session.tsx';
import { Dialog } from './dialog.tsx';
import { ErrorMessage } from './error-message.tsx';

export type PlanFormat = 'json' | 'yaml';

const MEDIA_TYPE: Record<PlanFormat, string> = { json: 'application/json', yaml: 'application/yaml' };

/** A file name for a plan's document: its name where a file system allows it, and the format's extension. */
export function planFileName(planName: string, format: PlanFormat): string {
  const safe = planName.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+|-+$/g, '');
  return `${safe || 'plan'}.${format}`;
}

/** The plan's document as GET /plans/:id/export writes it, in either format, to read, copy or download. */
export function PlanExportDialog({
  planPath,
  planName,
  onClose,
}: {
  /** /plans/:id */
  planPath: string;
  planName: string;
  onClose: () => void;
}) {
  const { api } = useSession();
  const [format, setFormat] = useState<PlanFormat>('json');
  const [text, setText] = useState<Partial<Record<PlanFormat, string>>>({});
  const [error, setError] = useState<ApiError>();
  useEffect(() => {
    if (text[format] !== undefined) return;
    setError(undefined);
    const load =
      format === 'yaml'
        ? api.getText(`${planPath}/export?format=yaml`)
        : api.get<PlanDocument>(`${planPath}/export`).then((doc) => `${JSON.stringify(doc, null, 2)}\n`);
    load.then(
      (t) => setText((all) => ({ ...all, [format]: t })),
      (e) => setError(asApiError(e)),
    );
  }, [api, planPath, format, text]);
  const shown = text[format];
  return (
    <Dialog title={`Export plan ${planName}`} onClose={onClose} wide>
      <p className="muted">
        Machines by name, as <code>haven plans export</code> writes it; import it here or with{' '}
        <code>haven plans import</code>.
      </p>
      <fieldset className="radios inline">
        <legend>Format</legend>
        {(['json', 'yaml'] as const).map((f) => (
          <label key={f}>
            <input type="radio" name="export-format" checked={format === f} onChange={() => setFormat(f)} />{' '}
            {f.toUpperCase()}
          </label>
        ))}
      </fieldset>
      <ErrorMessage error={error} />
      {shown === undefined ? (
        !error && <p className="loading-page">Loading…</p>
      ) : (
        <textarea
          className="code"
          rows={16}
          readOnly
          value={shown}
          aria-label="Plan document"
          data-format={format}
        />
      )}
      <div className="dialog-actions">
        {shown !== undefined && (
          <a
            className="button"
            href={`data:${MEDIA_TYPE[format]};charset=utf-8,${encodeURIComponent(shown)}`}
            download={planFileName(planName, format)}
          >
            Download {planFileName(planName, format)}
          </a>
        )}
        <button type="button" onClick={onClose}>
          Done
        </button>
      </div>
    </Dialog>
  );
}
