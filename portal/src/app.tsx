import { useCallback, useEffect, useMemo, useState } from 'react';
import { ApiClient, ApiError } from './api-client.ts';
import { AlertCount } from './components/alert-count.tsx';
import { TargetNamesProvider } from './components/target-link.tsx';
import { AlertsPage } from './pages/alerts-page.tsx';
import { DashboardPage } from './pages/dashboard-page.tsx';
import { DrillPage } from './pages/drill-page.tsx';
import { DrillsPage } from './pages/drills-page.tsx';
import { GroupPage } from './pages/group-page.tsx';
import { GroupsPage } from './pages/groups-page.tsx';
import { HostPage } from './pages/host-page.tsx';
import { HostsPage } from './pages/hosts-page.tsx';
import { JobPage } from './pages/job-page.tsx';
import { JobsPage } from './pages/jobs-page.tsx';
import { MachinePage } from './pages/machine-page.tsx';
import { MachinesPage } from './pages/machines-page.tsx';
import { PlanPage } from './pages/plan-page.tsx';
import { PlansPage } from './pages/plans-page.tsx';
import { PoliciesPage } from './pages/policies-page.tsx';
import { ServersPage } from './pages/servers-page.tsx';
import { SignInPage } from './pages/sign-in-page.tsx';
import { SitesPage } from './pages/sites-page.tsx';
import { Link, matchPath, usePath } from './router.tsx';
import {
  type Identity,
  identify,
  type Session,
  SessionProvider,
  storedIdentity,
  storedToken,
  useSession,
} from './session.tsx';

export function App() {
  // A stored token renders at once: as who it was last time, or as a viewer (shows the least)
  // until /session answers.
  const [identity, setIdentity] = useState<Identity | null>(() => {
    const token = storedToken.get();
    if (!token) return null;
    return storedIdentity.get(token) ?? { token, tokenName: '…', role: 'viewer' };
  });
  const [signInError, setSignInError] = useState<ApiError>();

  // Re-check a stored token (revoked? role changed?) while the cached identity renders.
  useEffect(() => {
    const token = storedToken.get();
    if (!token) return;
    identify(token)
      .then((who) => {
        storedIdentity.set(who);
        setIdentity((current) =>
          current && current.role === who.role && current.tokenName === who.tokenName ? current : who,
        );
      })
      .catch((e: unknown) => {
        storedToken.clear();
        setIdentity(null);
        if (e instanceof ApiError) setSignInError(e);
      });
  }, []);

  const signOut = useCallback(() => {
    storedToken.clear();
    setIdentity(null);
  }, []);

  const session = useMemo<Session | null>(() => {
    if (!identity) return null;
    const api = new ApiClient(identity.token);
    api.onUnauthenticated = signOut;
    return { api, tokenName: identity.tokenName, role: identity.role, signOut };
  }, [identity, signOut]);

  if (!session) {
    return (
      <SignInPage
        initialError={signInError}
        onSignedIn={(who) => {
          storedToken.set(who.token);
          storedIdentity.set(who);
          setIdentity(who);
        }}
      />
    );
  }
  return (
    <SessionProvider session={session}>
      <Shell />
    </SessionProvider>
  );
}

const NAV = [
  { to: '/', label: 'Dashboard', active: (p: string) => p === '/' },
  { to: '/machines', label: 'Machines', active: (p: string) => p.startsWith('/machines') },
  { to: '/servers', label: 'Servers', active: (p: string) => p.startsWith('/servers') },
  { to: '/jobs', label: 'Jobs', active: (p: string) => p.startsWith('/jobs') },
  { to: '/plans', label: 'Plans', active: (p: string) => p.startsWith('/plans') },
  { to: '/drills', label: 'Drills', active: (p: string) => p.startsWith('/drills') },
  { to: '/groups', label: 'Groups', active: (p: string) => p.startsWith('/groups') },
  { to: '/policies', label: 'Policies', active: (p: string) => p.startsWith('/policies') },
  { to: '/hosts', label: 'Hosts', active: (p: string) => p.startsWith('/hosts') },
  { to: '/sites', label: 'Sites', active: (p: string) => p.startsWith('/sites') },
  { to: '/alerts', label: 'Alerts', active: (p: string) => p.startsWith('/alerts') },
];

function Shell() {
  const path = usePath();
  return (
    <TargetNamesProvider>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link to="/" className="brand">
          Haven
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.map((item) => (
              <li key={item.to}>
                <Link to={item.to} aria-current={item.active(path) ? 'page' : undefined}>
                  {item.label}
                  {item.to === '/alerts' && <AlertCount />}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <SessionBadge />
      </header>
      <main id="main" tabIndex={-1}>
        <Page path={path} />
      </main>
    </TargetNamesProvider>
  );
}

function SessionBadge() {
  const { tokenName, role, signOut } = useSession();
  return (
    <div className="who">
      <span data-testid="who">
        {tokenName} <span className="badge badge-role">{role}</span>
      </span>
      <button type="button" onClick={signOut}>
        Sign out
      </button>
    </div>
  );
}

function Page({ path }: { path: string }) {
  if (path === '/' || path === '') return <DashboardPage />;
  if (path === '/machines' || path === '/machines/') return <MachinesPage />;
  const machine = matchPath('/machines/:id', path);
  if (machine) return <MachinePage id={machine.id!} />;
  if (path === '/servers' || path === '/servers/') return <ServersPage />;
  if (path === '/jobs' || path === '/jobs/') return <JobsPage />;
  if (path === '/hosts' || path === '/hosts/') return <HostsPage />;
  const host = matchPath('/hosts/:id', path);
  if (host) return <HostPage id={host.id!} />;
  if (path === '/sites' || path === '/sites/') return <SitesPage />;
  if (path === '/alerts' || path === '/alerts/') return <AlertsPage />;
  if (path === '/plans' || path === '/plans/') return <PlansPage />;
  const plan = matchPath('/plans/:id', path);
  if (plan) return <PlanPage id={plan.id!} />;
  if (path === '/drills' || path === '/drills/') return <DrillsPage />;
  const drill = matchPath('/drills/:id', path);
  if (drill) return <DrillPage id={drill.id!} />;
  if (path === '/groups' || path === '/groups/') return <GroupsPage />;
  const group = matchPath('/groups/:name', path);
  if (group) return <GroupPage name={group.name!} />;
  if (path === '/policies' || path === '/policies/') return <PoliciesPage />;
  const job = matchPath('/jobs/:id', path);
  if (job) return <JobPage id={job.id!} />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page at <code>{path}</code>. <Link to="/">Back to the dashboard</Link>.
      </p>
    </section>
  );
}
