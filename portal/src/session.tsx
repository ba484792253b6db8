import { createContext, type ReactNode, useContext } from 'react';
import type { Role } from '../../src/domain/model.ts';
import { ApiClient } from './api-client.ts';

const TOKEN_KEY = 'haven.token';

export interface Session {
  api: ApiClient;
  tokenName: string;
  role: Role;
  signOut(): void;
}

/** The token lives in sessionStorage: it survives a reload but not closing the tab. */
export const storedToken = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (token: string): void => sessionStorage.setItem(TOKEN_KEY, token),
  clear: (): void => {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(IDENTITY_KEY);
  },
};

const IDENTITY_KEY = 'haven.identity';

/**
 * Who the stored token was at sign-in, so a reload renders at once while
 * /session re-checks it. Only what is shown depends on it: the vault checks
 * the token's role on every request.
 */
export const storedIdentity = {
  get: (token: string): Identity | null => {
    try {
      const cached = JSON.parse(sessionStorage.getItem(IDENTITY_KEY) ?? 'null') as Omit<
        Identity,
        'token'
      > | null;
      return cached ? { token, tokenName: cached.tokenName, role: cached.role } : null;
    } catch {
      return null;
    }
  },
  set: (identity: Identity): void =>
    sessionStorage.setItem(
      IDENTITY_KEY,
      JSON.stringify({ tokenName: identity.tokenName, role: identity.role }),
    ),
};

export interface Identity {
  token: string;
  tokenName: string;
  role: Role;
}

/** Asks the vault who a token is; throws (401) when it is unknown or revoked. */
export async function identify(token: string): Promise<Identity> {
  const who = await new ApiClient(token).get<{ tokenName: string; role: Role }>('/session');
  return { token, ...who };
}

const SessionContext = createContext<Session | null>(null);

export function SessionProvider({ session, children }: { session: Session; children: ReactNode }) {
  return <SessionContext.Provider value={session}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside a signed-in session');
  return session;
}

/** Operators and admins act; viewers only look (the vault enforces it too). */
export function canOperate(role: Role): boolean {
  return role === 'operator' || role === 'admin';
}
