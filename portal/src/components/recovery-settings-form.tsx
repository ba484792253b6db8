import { type FormEvent, useEffect, useState } from 'react';
import type { IpConfig, Machine, NicSettings, RecoverySettings } from '../../../src/domain/model.ts';
import { type ApiError, asApiError } from '../api-client.ts';
import { useSession } from '../session.tsx';
import { ErrorMessage } from './error-message.tsx';
import { Field, type Problem, problemsByField } from './field.tsx';

/** Recovery settings (SPEC §5), editable by operators, with every problem shown at its field. */
export function RecoverySettingsForm({
  machine,
  problems,
  editable,
  onSaved,
}: {
  machine: Machine;
  /** Pre-failover validation problems (GET /validation). */
  problems: Problem[];
  editable: boolean;
  onSaved: (machine: Machine) => void;
}) {
  const { api } = useSession();
  const [draft, setDraft] = useState<RecoverySettings>(machine.recoverySettings);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<ApiError>();
  const [saved, setSaved] = useState(false);
  // The page polls the machine: only a real change on the server resets the draft.
  const serverSettings = JSON.stringify(machine.recoverySettings);
  useEffect(() => setDraft(JSON.parse(serverSettings) as RecoverySettings), [serverSettings]);

  const byField = problemsByField(error, problems);
  const unplaced = [...byField.keys()].filter((k) => !isFormField(k, draft));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setSaving(true);
    setError(undefined);
    setSaved(false);
    try {
      const updated = await api.patch<Machine>(`/machines/${machine.id}/recovery-settings`, draft);
      setSaved(true);
      onSaved(updated);
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setSaving(false);
    }
  };
  const setNic = (index: number, patch: Partial<NicSettings>) =>
    setDraft((d) => ({ ...d, nics: d.nics.map((n, i) => (i === index ? { ...n, ...patch } : n)) }));
  const setIp = (index: number, ip: IpConfig) => setNic(index, { ip });

  return (
    <form onSubmit={submit} className="settings-form" noValidate>
      <fieldset disabled={!editable || saving}>
        <legend className="sr-only">Recovery settings</legend>
        <div className="row">
          <Field name="targetName" label="Name at the recovery site" errors={byField}>
            {(props) => (
              <input
                {...props}
                value={draft.targetName}
                onChange={(e) => setDraft({ ...draft, targetName: e.target.value })}
              />
            )}
          </Field>
          <Field name="cpus" label="CPUs" errors={byField}>
            {(props) => (
              <input
                {...props}
                type="number"
                min={1}
                value={Number.isNaN(draft.cpus) ? '' : draft.cpus}
                onChange={(e) => setDraft({ ...draft, cpus: e.target.valueAsNumber })}
              />
            )}
          </Field>
          <Field name="memoryMiB" label="Memory (MiB)" errors={byField}>
            {(props) => (
              <input
                {...props}
                type="number"
                min={1}
                value={Number.isNaN(draft.memoryMiB) ? '' : draft.memoryMiB}
                onChange={(e) => setDraft({ ...draft, memoryMiB: e.target.valueAsNumber })}
              />
            )}
          </Field>
        </div>
        {draft.nics.map((nic, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: adapters have no identity but their position (the API's nics[i])
          <fieldset key={i} className="nic">
            <legend>Network adapter {i + 1}</legend>
            <div className="row">
              <Field name={`nics.${i}.network`} label="Network" errors={byField}>
                {(props) => (
                  <input
                    {...props}
                    value={nic.network}
                    onChange={(e) => setNic(i, { network: e.target.value })}
                  />
                )}
              </Field>
              <Field
                name={`nics.${i}.recoveryNetwork`}
                label="Recovery network (empty: site mapping)"
                errors={byField}
              >
                {(props) => (
                  <input
                    {...props}
                    value={nic.recoveryNetwork ?? ''}
                    onChange={(e) => setNic(i, { recoveryNetwork: e.target.value || null })}
                  />
                )}
              </Field>
              <Field name={`nics.${i}.mac`} label="MAC address" errors={byField}>
                {(props) => (
                  <input
                    {...props}
                    value={nic.mac ?? ''}
                    onChange={(e) => setNic(i, { mac: e.target.value || null })}
                  />
                )}
              </Field>
              <Field name={`nics.${i}.ip.mode`} label="IP" errors={byField}>
                {(props) => (
                  <select
                    {...props}
                    value={nic.ip.mode}
                    onChange={(e) =>
                      setIp(
                        i,
                        e.target.value === 'dhcp'
                          ? { mode: 'dhcp' }
                          : { mode: 'static', address: '', prefixLength: 24, gateway: null, dns: [] },
                      )
                    }
                  >
                    <option value="dhcp">DHCP</option>
                    <option value="static">Static</option>
                  </select>
                )}
              </Field>
            </div>
            {nic.ip.mode === 'static' && (
              <StaticIpFields index={i} ip={nic.ip} errors={byField} onChange={(ip) => setIp(i, ip)} />
            )}
            {editable && (
              <button
                type="button"
                onClick={() => setDraft((d) => ({ ...d, nics: d.nics.filter((_, j) => j !== i) }))}
              >
                Remove adapter {i + 1}
              </button>
            )}
          </fieldset>
        ))}
        {editable && (
          <div className="form-actions">
            <button
              type="button"
              onClick={() =>
                setDraft((d) => ({
                  ...d,
                  nics: [...d.nics, { network: '', recoveryNetwork: null, mac: null, ip: { mode: 'dhcp' } }],
                }))
              }
            >
              Add network adapter
            </button>
            <button type="submit" className="primary">
              {saving ? 'Saving…' : 'Save recovery settings'}
            </button>
          </div>
        )}
      </fieldset>
      {unplaced.length > 0 && (
        <ul className="field-errors">
          {unplaced.map((k) => (
            <li key={k}>
              <code>{k}</code>: {byField.get(k)!.join('; ')}
            </li>
          ))}
        </ul>
      )}
      {error && error.code !== 'bad_request' && <ErrorMessage error={error} />}
      {error?.code === 'bad_request' && (
        <p className="error" role="alert">
          Not saved: {error.message}
        </p>
      )}
      {saved && <p role="status">Saved.</p>}
    </form>
  );
}

function StaticIpFields({
  index,
  ip,
  errors,
  onChange,
}: {
  index: number;
  ip: Extract<IpConfig, { mode: 'static' }>;
  errors: Map<string, string[]>;
  onChange: (ip: IpConfig) => void;
}) {
  const base = `nics.${index}.ip`;
  return (
    <div className="row">
      <Field name={`${base}.address`} label="Address" errors={errors}>
        {(props) => (
          <input
            {...props}
            value={ip.address}
            onChange={(e) => onChange({ ...ip, address: e.target.value })}
          />
        )}
      </Field>
      <Field name={`${base}.prefixLength`} label="Prefix length" errors={errors}>
        {(props) => (
          <input
            {...props}
            type="number"
            min={0}
            max={128}
            value={Number.isNaN(ip.prefixLength) ? '' : ip.prefixLength}
            onChange={(e) => onChange({ ...ip, prefixLength: e.target.valueAsNumber })}
          />
        )}
      </Field>
      <Field name={`${base}.gateway`} label="Gateway" errors={errors}>
        {(props) => (
          <input
            {...props}
            value={ip.gateway ?? ''}
            onChange={(e) => onChange({ ...ip, gateway: e.target.value || null })}
          />
        )}
      </Field>
      <Field name={`${base}.dns`} label="DNS servers (comma-separated)" errors={errors}>
        {(props) => (
          <input
            {...props}
            value={ip.dns.join(', ')}
            onChange={(e) =>
              onChange({
                ...ip,
                dns: e.target.value
                  .split(',')
                  .map((s) => s.trim())
                  .filter(Boolean),
              })
            }
          />
        )}
      </Field>
    </div>
  );
}

function isFormField(key: string, draft: RecoverySettings): boolean {
  if (['targetName', 'cpus', 'memoryMiB'].includes(key)) return true;
  const m = key.match(
    /^nics\.(\d+)\.(network|recoveryNetwork|mac|ip\.mode|ip\.address|ip\.prefixLength|ip\.gateway|ip\.dns)$/,
  );
  if (!m) return false;
  const nic = draft.nics[Number(m[1])];
  if (!nic) return false;
  return !m[2]!.startsWith('ip.') || m[2] === 'ip.mode' || nic.ip.mode === 'static';
}
