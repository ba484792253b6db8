import type { Host } from '../../../src/domain/model.ts';

/**
 * The host a failback or reprotect creates new machines on ("alternate
 * location"): the machine dialog's and the plan dialog's one choice. Hosts
 * where the machines run now are not offered: the vault refuses them.
 */
export function AlternateHostSelect({
  id,
  hosts,
  runningOn,
  value,
  onChange,
}: {
  id: string;
  hosts: Host[];
  /** The hosts the machines run on now. */
  runningOn: string[];
  value: string;
  onChange: (hostId: string) => void;
}) {
  return (
    <div className="field">
      <label htmlFor={id}>Alternate host</label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">— choose a host —</option>
        {hosts
          .filter((h) => !runningOn.includes(h.id))
          .map((h) => (
            <option key={h.id} value={h.id}>
              {h.name}
            </option>
          ))}
      </select>
    </div>
  );
}

/** A failback or reprotect form's state as the API wants it: `alternateHostId` only for an alternate location. */
export function withAlternateHost(body: Record<string, unknown>): Record<string, unknown> {
  const { location, alternateHostId, ...rest } = body;
  return location === 'alternate' ? { ...rest, alternateHostId } : rest;
}
