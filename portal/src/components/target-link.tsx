import { createContext, type ReactNode, useContext, useEffect, useMemo, useState } from 'react';
import type { Host, Machine, RecoveryPlan } from '../../../src/domain/model.ts';
import { Link } from '../router.tsx';
import { useResource } from '../use-resource.ts';

/** What a job or an alert is about: a machine, a plan, a host, or the vault itself. */
export type TargetType = 'machine' | 'plan' | 'host' | 'vault';

interface Names {
  machine: Map<string, string>;
  plan: Map<string, string>;
  host: Map<string, string>;
  loaded: boolean;
  /** Asks for the names: nothing is fetched until a page shows a target. */
  want(): void;
}

const NamesContext = createContext<Names | null>(null);

/**
 * The names of machines, plans and hosts, fetched once for the signed-in
 * shell, so every job and alert can name its target instead of showing an id.
 */
export function TargetNamesProvider({ children }: { children: ReactNode }) {
  const [wanted, setWanted] = useState(false);
  const refresh = { refreshMs: 15_000 };
  const machines = useResource<{ machines: Pick<Machine, 'id' | 'name'>[] }>(
    wanted ? '/machines' : null,
    refresh,
  );
  const plans = useResource<{ plans: Pick<RecoveryPlan, 'id' | 'name'>[] }>(
    wanted ? '/plans' : null,
    refresh,
  );
  const hosts = useResource<{ hosts: Pick<Host, 'id' | 'name'>[] }>(wanted ? '/hosts' : null, refresh);
  const names = useMemo<Names>(
    () => ({
      machine: new Map((machines.data?.machines ?? []).map((m) => [m.id, m.name])),
      plan: new Map((plans.data?.plans ?? []).map((p) => [p.id, p.name])),
      host: new Map((hosts.data?.hosts ?? []).map((h) => [h.id, h.name])),
      loaded: Boolean(machines.data && plans.data && hosts.data),
      want: () => setWanted(true),
    }),
    [machines.data, plans.data, hosts.data],
  );
  return <NamesContext.Provider value={names}>{children}</NamesContext.Provider>;
}

const PATHS: Record<Exclude<TargetType, 'vault'>, string> = {
  machine: '/machines',
  plan: '/plans',
  host: '/hosts',
};

/**
 * A job's or alert's target by name, linked to its page. A target that no
 * longer exists says so (a deleted machine keeps its jobs); the id stays in
 * the tooltip for whoever needs it.
 */
export function TargetLink({ type, id }: { type: TargetType; id: string | null }) {
  const names = useContext(NamesContext);
  useEffect(() => names?.want(), [names]);
  if (type === 'vault' || id === null) return <span className="muted">the vault</span>;
  const name = names?.[type].get(id);
  if (name === undefined) {
    if (names && !names.loaded) return <span aria-busy="true">{type} …</span>;
    return (
      <span className="muted" title={id}>
        deleted {type}
      </span>
    );
  }
  return (
    <Link to={`${PATHS[type]}/${encodeURIComponent(id)}`} title={`${type} ${name}`} data-target={type}>
      {name}
    </Link>
  );
}
