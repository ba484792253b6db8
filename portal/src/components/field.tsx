import type { ReactNode } from 'react';
import type { ApiError } from '../api-client.ts';

export interface Problem {
  field: string;
  message: string;
}

/**
 * The API names fields two ways: domain validation as 'groups[0].name' (and
 * 'recoverySettings.nics[0].ip.gateway'), request checks (400) as
 * 'groups.0.name'. Both become the second form, the forms' field keys.
 */
export function fieldKey(field: string): string {
  return field.replace(/^recoverySettings\./, '').replace(/\[(\d+)\]/g, '.$1');
}

/** Problems by field key: those of a refusal (details.problems, or its one details.field) and any others. */
export function problemsByField(error: ApiError | undefined, more: Problem[] = []): Map<string, string[]> {
  const listed = error?.details.problems as Problem[] | undefined;
  const field = typeof error?.details.field === 'string' ? error.details.field : null;
  const fromError = listed ?? (error && field ? [{ field, message: error.message }] : []);
  const byField = new Map<string, string[]>();
  for (const p of [...fromError, ...more]) {
    const key = fieldKey(p.field);
    byField.set(key, [...(byField.get(key) ?? []), p.message]);
  }
  return byField;
}

export interface FieldProps {
  id: string;
  name: string;
  'aria-invalid': boolean;
  'aria-describedby': string | undefined;
}

/** A labelled input whose problems (all of them) sit under it and are announced with it. */
export function Field({
  name,
  label,
  errors,
  idPrefix = 'rs',
  children,
}: {
  name: string;
  label: ReactNode;
  errors: Map<string, string[]>;
  /** Keeps ids unique when two forms share field names. */
  idPrefix?: string;
  children: (props: FieldProps) => ReactNode;
}) {
  const id = `${idPrefix}-${name.replace(/\./g, '-')}`;
  const messages = errors.get(name) ?? [];
  return (
    <div className={`field${messages.length > 0 ? ' invalid' : ''}`}>
      <label htmlFor={id}>{label}</label>
      {children({
        id,
        name,
        'aria-invalid': messages.length > 0,
        'aria-describedby': messages.length > 0 ? `${id}-error` : undefined,
      })}
      {messages.length > 0 && (
        <p id={`${id}-error`} className="field-error" data-field={name}>
          {messages.join('; ')}
        </p>
      )}
    </div>
  );
}
