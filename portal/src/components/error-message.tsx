import type { ApiError } from '../api-client.ts';

interface ProblemDetail {
  field: string;
  message: string;
}

/**
 * Shows the vault's answer as it is: its message, then what the details add
 * (the problems, the state and what is allowed in it).
 */
export function ErrorMessage({ error }: { error: ApiError | undefined }) {
  if (!error) return null;
  const problems = Array.isArray(error.details.problems) ? (error.details.problems as ProblemDetail[]) : [];
  const allowed = Array.isArray(error.details.allowedOperations)
    ? (error.details.allowedOperations as string[])
    : null;
  return (
    <div className="error" role="alert" data-code={error.code}>
      <p>
        <strong>{error.message}</strong>
      </p>
      {problems.length > 0 && (
        <ul>
          {problems.map((p) => (
            <li key={`${p.field}:${p.message}`}>
              <code>{p.field}</code>: {p.message}
            </li>
          ))}
        </ul>
      )}
      {allowed && (
        <p>Allowed now: {allowed.length > 0 ? allowed.join(', ') : 'nothing until the running job ends'}</p>
      )}
      <p className="muted small">
        {error.status > 0 ? `HTTP ${error.status}` : 'No answer'} · {error.code}
      </p>
    </div>
  );
}
