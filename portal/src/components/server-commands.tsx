import { useState } from 'react';
import type { ServerEnrolmentIssued } from '../../../src/vault/servers/server-onboarding.ts';
import { formatTime } from '../format-time.ts';

/**
 * A server's enrolment as the vault answers it once: the commands to run on
 * the server as root (with a copy button), when the token expires, and how
 * writes reach the NBD leg. The vault keeps only the token's hash, so this
 * is the only time it shows.
 */
export function ServerCommands({ name, enrolment }: { name: string; enrolment: ServerEnrolmentIssued }) {
  const [copied, setCopied] = useState<'yes' | 'failed' | null>(null);
  const text = enrolment.commands.join('\n');
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied('yes');
    } catch {
      setCopied('failed');
    }
  };
  return (
    <div className="server-commands" data-testid="server-commands">
      <p className="notice" role="status">
        Shown once: run these as root on <strong>{name}</strong>. The token in them works once, until{' '}
        <time dateTime={enrolment.expiresAt} data-testid="token-expiry">
          {formatTime(enrolment.expiresAt)}
        </time>
        ; New enrolment gives new commands (and stops these).
      </p>
      <div className="toolbar">
        <button type="button" onClick={copy}>
          Copy commands
        </button>
        <span role="status" className="muted small">
          {copied === 'yes'
            ? 'Copied.'
            : copied === 'failed'
              ? 'The browser refused: select the text and copy it.'
              : ''}
        </span>
      </div>
      <pre className="log commands" data-testid="commands-text">
        {text}
      </pre>
      <p className="hint">Writes: {enrolment.writeOrdering}.</p>
    </div>
  );
}
