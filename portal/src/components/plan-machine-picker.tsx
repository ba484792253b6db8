import { type KeyboardEvent, useId, useRef, useState } from 'react';
import type { MachineState } from '../../../src/domain/model.ts';
import { StateBadge } from './badges.tsx';
import type { FieldProps } from './field.tsx';

/** A machine as the picker offers it. */
export interface PickableMachine {
  name: string;
  state: MachineState;
  /** The site it runs at now; null when its host is unknown. */
  site: string | null;
}

/** Past this many matches the list asks for more letters instead of growing. */
const SHOWN = 50;

/**
 * Chooses a plan group's machines from the vault's: a combobox searched by
 * name (arrows, Enter, Escape), each match with its state and site; a machine
 * another group of the plan lists is shown with that group and cannot be
 * chosen (the vault refuses a machine in two groups). Chosen machines are
 * listed with a Remove button each; one the vault no longer knows is marked.
 */
export function PlanMachinePicker({
  field,
  group,
  chosen,
  machines,
  elsewhere,
  onChange,
}: {
  /** The input's id and error wiring, from Field. */
  field: FieldProps;
  /** The group's label for screen readers ("group 1"). */
  group: string;
  chosen: string[];
  machines: PickableMachine[];
  /** Machine name -> the other group of the plan that lists it. */
  elsewhere: Map<string, string>;
  onChange: (names: string[]) => void;
}) {
  const listId = useId();
  const [query, setQuery] = useState('');
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  const search = useRef<HTMLInputElement>(null);
  const byName = new Map(machines.map((m) => [m.name, m]));
  const needle = query.trim().toLowerCase();
  const matches = machines.filter((m) => !chosen.includes(m.name) && m.name.toLowerCase().includes(needle));
  const shown = matches.slice(0, SHOWN);
  const pickable = (m: PickableMachine) => !elsewhere.has(m.name);
  // The highlighted match: the one the arrows reached, else the first that can be chosen.
  const current = shown[active] && pickable(shown[active]) ? active : shown.findIndex(pickable);

  const pick = (m: PickableMachine | undefined) => {
    if (!m || !pickable(m)) return;
    onChange([...chosen, m.name]);
    setQuery('');
    setActive(0);
  };
  /** The next choosable match from `from` in direction `by` (machines in other groups are skipped). */
  const step = (from: number, by: 1 | -1) => {
    for (let i = from + by; i >= 0 && i < shown.length; i += by) if (pickable(shown[i]!)) return i;
    return from;
  };
  const onKeyDown = (event: KeyboardEvent<HTMLInputElement>) => {
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      if (!open) setOpen(true);
      else setActive(step(current, event.key === 'ArrowDown' ? 1 : -1));
    } else if (event.key === 'Enter') {
      // Enter chooses; it never submits the plan from here.
      event.preventDefault();
      if (open) pick(shown[current]);
      else setOpen(true);
    } else if (event.key === 'Escape' && open) {
      event.preventDefault();
      setOpen(false);
    }
  };
  const expanded = open && shown.length > 0;
  const optionId = (i: number) => `${listId}-${i}`;

  return (
    <div className="machine-picker">
      {chosen.length > 0 && (
        <ul className="picked" aria-label={`Machines of ${group}`}>
          {chosen.map((name) => {
            const m = byName.get(name);
            return (
              <li key={name} className="picked-machine" data-machine={name}>
                <strong>{name}</strong>{' '}
                {m ? (
                  <>
                    <StateBadge state={m.state} />
                    {m.site && <span className="site muted small">{m.site}</span>}
                  </>
                ) : (
                  <span className="badge badge-missing">not found</span>
                )}
                <button
                  type="button"
                  className="icon-button"
                  aria-label={`Remove ${name} from ${group}`}
                  title={`Remove ${name}`}
                  onClick={() => {
                    onChange(chosen.filter((c) => c !== name));
                    // The button goes away with the chip: keep the focus in this group, at its search, list closed.
                    search.current?.focus();
                    setOpen(false);
                  }}
                >
                  ×
                </button>
              </li>
            );
          })}
        </ul>
      )}
      <input
        {...field}
        ref={search}
        type="search"
        role="combobox"
        autoComplete="off"
        placeholder="Search machines by name…"
        aria-autocomplete="list"
        aria-expanded={expanded}
        aria-controls={listId}
        aria-activedescendant={expanded && current >= 0 ? optionId(current) : undefined}
        value={query}
        onChange={(e) => {
          setQuery(e.target.value);
          setOpen(true);
          setActive(0);
        }}
        onFocus={() => setOpen(true)}
        onBlur={() => setOpen(false)}
        onKeyDown={onKeyDown}
      />
      <div id={listId} role="listbox" className="picker-options" hidden={!expanded} aria-label="Machines">
        {/* Only the open list's options exist: closed ones would answer searches for options. */}
        {expanded &&
          shown.map((m, i) => {
            const other = elsewhere.get(m.name);
            return (
              <div
                key={m.name}
                id={optionId(i)}
                role="option"
                tabIndex={-1}
                aria-selected={i === current}
                aria-disabled={other !== undefined}
                data-machine={m.name}
                className={i === current ? 'picker-option active' : 'picker-option'}
                // mousedown, not click: the input keeps focus (its blur would close the list first).
                onMouseDown={(e) => {
                  e.preventDefault();
                  pick(m);
                }}
              >
                <span className="name">{m.name}</span> <StateBadge state={m.state} />
                {m.site && <span className="site muted small">{m.site}</span>}
                {other !== undefined && <span className="muted small"> · in group {other}</span>}
              </div>
            );
          })}
        {expanded && matches.length > shown.length && (
          <p className="picker-more muted small">
            {matches.length - shown.length} more: type more of the name
          </p>
        )}
      </div>
      {open && needle !== '' && matches.length === 0 && (
        <p className="muted small" role="status">
          No machine named like “{query.trim()}” outside this group.
        </p>
      )}
    </div>
  );
}
