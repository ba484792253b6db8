import { type FormEvent, useState } from 'react';
import type { Host, Site } from '../../../src/domain/model.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { Ago } from '../components/ago.tsx';
import { Dialog } from '../components/dialog.tsx';
import { DialogActions } from '../components/dialog-actions.tsx';
import { ErrorMessage } from '../components/error-message.tsx';
import { Field, type Problem, problemsByField } from '../components/field.tsx';
import { Link } from '../router.tsx';
import { useSession } from '../session.tsx';
import { useResource } from '../use-resource.ts';

export function SitesPage() {
  const { role } = useSession();
  const [editing, setEditing] = useState<Site | null>(null);
  const sites = useResource<{ sites: Site[] }>('/sites');
  const hosts = useResource<{ hosts: Host[] }>('/hosts', { refreshMs: 10_000 });
  const list = sites.data?.sites ?? [];
  const nameOf = new Map(list.map((s) => [s.id, s.name]));
  return (
    <section>
      <h1>Sites</h1>
      <ErrorMessage error={sites.error ?? hosts.error} />
      {sites.data && list.length === 0 && <p className="muted">No sites yet.</p>}
      <div className="grid">
        {list.map((site) => {
          const at = (hosts.data?.hosts ?? []).filter((h) => h.siteId === site.id);
          const other = list.find((s) => s.id !== site.id);
          const mapping = Object.entries(site.networkMapping);
          return (
            <article className="card" key={site.id} id={`site-${site.name}`} data-site={site.name}>
              <h2>
                {site.name} <span className="badge">{site.role}</span>
              </h2>
              {role === 'admin' && (
                <div className="toolbar">
                  <button
                    type="button"
                    onClick={() => setEditing(site)}
                    aria-label={`Edit site ${site.name}…`}
                  >
                    Edit networks…
                  </button>
                </div>
              )}
              <h3>Hosts</h3>
              {at.length === 0 ? (
                <p className="muted">No host enrolled at this site.</p>
              ) : (
                <ul className="hosts">
                  {at.map((h) => (
                    <li key={h.id}>
                      <span className={`dot status-${h.status}`} aria-hidden="true" />
                      <Link to={`/hosts/${h.id}`}>{h.name}</Link>{' '}
                      <span className={`badge status-${h.status}`}>{h.status}</span>{' '}
                      <span className="muted small">
                        heartbeat <Ago iso={h.lastHeartbeatAt} />
                      </span>
                    </li>
                  ))}
                </ul>
              )}
              <h3>Network mapping</h3>
              {mapping.length === 0 ? (
                <p className="muted">No network mapped: recovered machines keep their network names.</p>
              ) : (
                <div className="table-wrap">
                  <table data-testid="network-mapping">
                    <thead>
                      <tr>
                        <th scope="col">Network here</th>
                        <th scope="col">
                          At {other ? (nameOf.get(other.id) ?? 'the other site') : 'the other site'}
                        </th>
                      </tr>
                    </thead>
                    <tbody>
                      {mapping.map(([here, there]) => (
                        <tr key={here}>
                          <td>{here}</td>
                          <td>{there}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              )}
              <h3>Test network</h3>
              <p data-testid="test-network">
                {site.testNetwork ?? <span className="muted">none: test failovers here need one</span>}
              </p>
            </article>
          );
        })}
      </div>
      {editing && (
        <SiteDialog
          site={editing}
          otherSite={list.find((s) => s.id !== editing.id)?.name ?? null}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            sites.reload();
          }}
        />
      )}
    </section>
  );
}

interface MappingRow {
  /** Keeps a row's inputs when a row above it is removed. */
  key: number;
  here: string;
  there: string;
}

let rowKeys = 0;

/** Problems the form sees before asking the vault: a row needs both names, a network maps once. */
function mappingProblems(rows: MappingRow[]): Problem[] {
  const seen = new Set<string>();
  return rows.flatMap((row, i): Problem[] => {
    const here = row.here.trim();
    const problems: Problem[] = [];
    if (!here) problems.push({ field: `mapping.${i}.here`, message: 'Name the network at this site' });
    else if (seen.has(here))
      problems.push({ field: `mapping.${i}.here`, message: `${here} is already mapped above` });
    if (!row.there.trim())
      problems.push({ field: `mapping.${i}.there`, message: `Name the network ${here || 'it'} becomes` });
    seen.add(here);
    return problems;
  });
}

/** An admin edits where this site's networks go at the other site, and its test network. */
function SiteDialog({
  site,
  otherSite,
  onClose,
  onSaved,
}: {
  site: Site;
  otherSite: string | null;
  onClose: () => void;
  onSaved: () => void;
}) {
  const { api } = useSession();
  const [rows, setRows] = useState<MappingRow[]>(() =>
    Object.entries(site.networkMapping).map(([here, there]) => ({ key: rowKeys++, here, there })),
  );
  const [testNetwork, setTestNetwork] = useState(site.testNetwork ?? '');
  const [shown, setShown] = useState<Problem[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError>();
  const errors = problemsByField(error, shown);
  const setRow = (i: number, patch: Partial<MappingRow>) =>
    setRows((all) => all.map((r, j) => (j === i ? { ...r, ...patch } : r)));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    const problems = mappingProblems(rows);
    setShown(problems);
    if (problems.length > 0) return;
    setBusy(true);
    try {
      await api.request('PATCH', `/sites/${encodeURIComponent(site.id)}`, {
        networkMapping: Object.fromEntries(rows.map((r) => [r.here.trim(), r.there.trim()])),
        testNetwork: testNetwork.trim() || null,
      });
      onSaved();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };
  const there = otherSite ?? 'the other site';
  return (
    <Dialog title={`Networks of site ${site.name}`} onClose={onClose}>
      <form onSubmit={submit} noValidate data-testid="site-form">
        <fieldset>
          <legend>Network mapping</legend>
          <p className="hint">
            A machine on a network here is connected at {there} to the network beside it.
          </p>
          {rows.length === 0 && <p className="muted">No network mapped.</p>}
          {rows.map((row, i) => (
            <div className="mapping-row" key={row.key} data-row={i}>
              <Field name={`mapping.${i}.here`} label="Network here" errors={errors} idPrefix="site">
                {(props) => (
                  <input {...props} value={row.here} onChange={(e) => setRow(i, { here: e.target.value })} />
                )}
              </Field>
              <Field name={`mapping.${i}.there`} label={`At ${there}`} errors={errors} idPrefix="site">
                {(props) => (
                  <input
                    {...props}
                    value={row.there}
                    onChange={(e) => setRow(i, { there: e.target.value })}
                  />
                )}
              </Field>
              <button
                type="button"
                aria-label={`Remove mapping ${row.here || i + 1}`}
                onClick={() => setRows((all) => all.filter((_, j) => j !== i))}
              >
                Remove
              </button>
            </div>
          ))}
          <button
            type="button"
            onClick={() => setRows((all) => [...all, { key: rowKeys++, here: '', there: '' }])}
          >
            Add mapping
          </button>
        </fieldset>
        <Field
          name="testNetwork"
          label={
            <>
              Test network <span className="hint">empty: none (test failovers here then need one named)</span>
            </>
          }
          errors={errors}
          idPrefix="site"
        >
          {(props) => (
            <input {...props} value={testNetwork} onChange={(e) => setTestNetwork(e.target.value)} />
          )}
        </Field>
        <DialogActions error={error} onCancel={onClose} disabled={busy}>
          {busy ? 'Saving…' : 'Save networks'}
        </DialogActions>
      </form>
    </Dialog>
  );
}
