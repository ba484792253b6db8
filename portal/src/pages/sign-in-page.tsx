import { type FormEvent, useState } from 'react';
import { type ApiError, asApiError } from '../api-client.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { type Identity, identify } from '../session.tsx';

export function SignInPage({
  onSignedIn,
  initialError,
}: {
  onSignedIn: (who: Identity) => void;
  initialError: ApiError | undefined;
}) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | undefined>(initialError);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      onSignedIn(await identify(token.trim()));
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };

  return (
    <main className="sign-in" id="main">
      <form onSubmit={submit} aria-labelledby="sign-in-title">
        <h1 id="sign-in-title">Sign in to Haven</h1>
        <p className="muted">
          Paste an API token. The first admin token is in <code>DATA/admin.token</code> on the vault host; an
          admin creates others with <code>haven tokens create</code>.
        </p>
        <label htmlFor="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          spellCheck={false}
          required
          value={token}
          onChange={(e) => setToken(e.target.value)}
          placeholder="hvn_…"
        />
        <ErrorMessage error={error} />
        <button type="submit" className="primary" disabled={busy || token.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <p className="muted small">The token is kept in this tab only (session storage).</p>
      </form>
    </main>
  );
}
