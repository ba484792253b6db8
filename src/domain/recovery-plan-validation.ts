/**
 * Recovery plans as plain data (SPEC §4): the document an operator writes
 * (machines by name, so it can live in version control and be imported on
 * another vault), its validation, and its resolution to machine ids.
 * Every problem is reported at once; nothing here does I/O.
 */
import { HavenError } from '../errors/index.ts';
import type { RecoveryPlanAction, RecoveryPlanGroup } from './model.ts';
import type { ProblemCode } from './problem.ts';

/** ASR allows up to 100 machines per recovery plan; Haven keeps that bound. */
export const MAX_PLAN_MACHINES = 100;
export const MAX_PLAN_GROUPS = 20;
/** Actions on one side (before or after) of one group. */
export const MAX_GROUP_ACTIONS = 20;
export const MAX_PLAN_NAME_LENGTH = 100;
export const MAX_PLAN_DESCRIPTION_LENGTH = 2000;
export const MAX_ACTION_TEXT_LENGTH = 10_000;
/** A script action with no timeout of its own is killed after this. */
export const DEFAULT_SCRIPT_TIMEOUT_SECONDS = 600;
export const MAX_SCRIPT_TIMEOUT_SECONDS = 86_400;

export interface PlanActionDocument {
  kind: 'script' | 'manual';
  name: string;
  /** manual: the instructions. A script action may not carry a command: it names a registered script. */
  text?: string;
  /** script: the name of a script an admin registered in the vault's scripts folder. */
  script?: string;
  timeoutSeconds?: number | null;
}

export interface PlanGroupDocument {
  name: string;
  /** Machine names (or ids); resolved against the vault's machines. */
  machines: string[];
  before?: PlanActionDocument[];
  after?: PlanActionDocument[];
}

/** A plan as written by an operator and as exported. */
export interface PlanDocument {
  name: string;
  description?: string;
  groups: PlanGroupDocument[];
}

export interface PlanProblem {
  field: string;
  code: ProblemCode | 'unknown_machine' | 'machine_busy' | 'unknown_script' | 'inline_script';
  message: string;
}

export interface KnownMachine {
  id: string;
  name: string;
}

/** A machine that a running job of another plan is moving. */
export interface BusyMachine {
  machineId: string;
  planName: string;
  jobId: string;
}

/** The scripts plans may name: those registered (and usable) in the vault's scripts folder. */
export interface KnownScripts {
  names: ReadonlySet<string>;
  /** The folder an admin registers scripts in, for the refusal's advice. */
  dir: string;
}

export interface PlanValidationContext {
  machines: readonly KnownMachine[];
  scripts: KnownScripts;
  busy?: readonly BusyMachine[];
}

export interface ValidatedPlan {
  name: string;
  description: string;
  groups: RecoveryPlanGroup[];
}

/**
 * Checks a plan document and resolves its machines. A machine may appear only
 * once in a plan: listed in two groups it would have to start both before and
 * after itself (a cycle), listed twice in one group it would start twice.
 */
export function validatePlan(
  doc: PlanDocument,
  context: PlanValidationContext,
): { problems: PlanProblem[]; plan: ValidatedPlan } {
  const problems: PlanProblem[] = [];
  const add = (field: string, code: PlanProblem['code'], message: string) =>
    problems.push({ field, code, message });
  const byId = new Map(context.machines.map((m) => [m.id, m]));
  const byName = new Map(context.machines.map((m) => [m.name, m]));
  const busy = new Map((context.busy ?? []).map((b) => [b.machineId, b]));

  const name = typeof doc.name === 'string' ? doc.name.trim() : '';
  if (!name) add('name', 'required', 'The plan needs a name');
  else if (name.length > MAX_PLAN_NAME_LENGTH)
    add('name', 'too_long', `The plan name is longer than ${MAX_PLAN_NAME_LENGTH} characters`);
  const description = doc.description ?? '';
  if (description.length > MAX_PLAN_DESCRIPTION_LENGTH)
    add(
      'description',
      'too_long',
      `The description is longer than ${MAX_PLAN_DESCRIPTION_LENGTH} characters`,
    );

  const groups = Array.isArray(doc.groups) ? doc.groups : [];
  if (groups.length === 0) add('groups', 'required', 'The plan needs at least one group');
  if (groups.length > MAX_PLAN_GROUPS)
    add(
      'groups',
      'out_of_range',
      `The plan has ${groups.length} groups; at most ${MAX_PLAN_GROUPS} are allowed`,
    );

  const groupNames = new Map<string, number>();
  /** machine id -> where it was first listed */
  const placed = new Map<string, { group: string; field: string }>();
  const resolved: RecoveryPlanGroup[] = [];
  let machineCount = 0;

  groups.forEach((group, g) => {
    const at = `groups[${g}]`;
    const groupName = typeof group.name === 'string' ? group.name.trim() : '';
    if (!groupName) add(`${at}.name`, 'required', `Group ${g + 1} needs a name`);
    else if (groupNames.has(groupName))
      add(
        `${at}.name`,
        'duplicate',
        `Group name '${groupName}' is used by groups ${groupNames.get(groupName)! + 1} and ${g + 1}; group names must be unique`,
      );
    else groupNames.set(groupName, g);
    const label = groupName || `${g + 1}`;

    const machineIds: string[] = [];
    const refs = Array.isArray(group.machines) ? group.machines : [];
    refs.forEach((ref, m) => {
      const field = `${at}.machines[${m}]`;
      const machine = byId.get(ref) ?? byName.get(ref);
      machineCount++;
      if (!machine) {
        add(field, 'unknown_machine', `Group '${label}': machine '${ref}' does not exist`);
        return;
      }
      const first = placed.get(machine.id);
      if (first) {
        add(
          field,
          'duplicate',
          first.group === label
            ? `Group '${label}' lists machine '${machine.name}' twice; a plan starts each machine once`
            : `Machine '${machine.name}' is in group '${first.group}' and in group '${label}': ` +
                'a machine in two groups would have to start both before and after itself (a cycle); list it once',
        );
        return;
      }
      placed.set(machine.id, { group: label, field });
      const running = busy.get(machine.id);
      if (running)
        add(
          field,
          'machine_busy',
          `Machine '${machine.name}' is being moved by job ${running.jobId} of plan '${running.planName}'; ` +
            'wait for that job to end',
        );
      machineIds.push(machine.id);
    });

    resolved.push({
      name: groupName,
      machineIds,
      before: validateActions(group.before, `${at}.before`, label, 'before', context.scripts, add),
      after: validateActions(group.after, `${at}.after`, label, 'after', context.scripts, add),
    });
  });

  if (machineCount > MAX_PLAN_MACHINES)
    add(
      'groups',
      'out_of_range',
      `The plan lists ${machineCount} machines; at most ${MAX_PLAN_MACHINES} are allowed per plan`,
    );
  else if (groups.length > 0 && machineCount === 0)
    add('groups', 'required', 'The plan lists no machine; add at least one to a group');

  return { problems, plan: { name, description, groups: resolved } };
}

function validateActions(
  actions: PlanActionDocument[] | undefined,
  at: string,
  group: string,
  side: 'before' | 'after',
  scripts: KnownScripts,
  add: (field: string, code: PlanProblem['code'], message: string) => void,
): RecoveryPlanAction[] {
  const list = actions ?? [];
  if (list.length > MAX_GROUP_ACTIONS)
    add(
      at,
      'out_of_range',
      `Group '${group}' has ${list.length} actions ${side} it; at most ${MAX_GROUP_ACTIONS} are allowed`,
    );
  // Order is kept exactly as written: it is the order they run in.
  return list.map((action, i): RecoveryPlanAction => {
    const field = `${at}[${i}]`;
    const name = typeof action.name === 'string' ? action.name.trim() : '';
    const what = `Group '${group}', action ${i + 1} ${side} the machines`;
    if (!name) add(`${field}.name`, 'required', `${what} needs a name`);
    const timeout = action.timeoutSeconds ?? null;
    if (action.kind === 'manual') {
      const text = typeof action.text === 'string' ? action.text : '';
      if (!text.trim()) add(`${field}.text`, 'required', `${what} needs instructions in 'text'`);
      else if (text.length > MAX_ACTION_TEXT_LENGTH)
        add(`${field}.text`, 'too_long', `${what}: text is longer than ${MAX_ACTION_TEXT_LENGTH} characters`);
      if (action.script !== undefined)
        add(`${field}.script`, 'invalid_format', `${what} is manual: it runs no script`);
      if (timeout !== null)
        add(
          `${field}.timeoutSeconds`,
          'out_of_range',
          `${what} is manual: it waits for the operator and has no timeout`,
        );
      return { kind: 'manual', name, text, timeoutSeconds: null };
    }
    if (action.kind !== 'script')
      add(`${field}.kind`, 'invalid_format', `${what}: kind must be 'script' or 'manual'`);
    if (action.text !== undefined)
      add(
        `${field}.text`,
        'inline_script',
        `${what}: a script action cannot carry a command in 'text'. ` +
          `An admin registers the script as an executable file in the vault's scripts folder (${scripts.dir}); ` +
          "the action then names it with 'script: NAME' (see 'haven scripts list')",
      );
    const script = typeof action.script === 'string' ? action.script.trim() : '';
    if (!script) {
      if (action.text === undefined)
        add(`${field}.script`, 'required', `${what} needs the name of a registered script in 'script'`);
    } else if (!scripts.names.has(script))
      add(
        `${field}.script`,
        'unknown_script',
        `${what}: script '${script}' is not registered: an admin puts an executable file of that name in ` +
          `the vault's scripts folder (${scripts.dir}); 'haven scripts list' shows those plans can use`,
      );
    if (timeout !== null) {
      if (!Number.isInteger(timeout))
        add(`${field}.timeoutSeconds`, 'not_integer', `${what}: timeoutSeconds must be whole seconds`);
      else if (timeout < 1 || timeout > MAX_SCRIPT_TIMEOUT_SECONDS)
        add(
          `${field}.timeoutSeconds`,
          'out_of_range',
          `${what}: timeoutSeconds must be between 1 and ${MAX_SCRIPT_TIMEOUT_SECONDS}`,
        );
    }
    return { kind: 'script', name, script, timeoutSeconds: timeout };
  });
}

/** validatePlan, throwing a 400 that names the first problem and lists them all. */
export function assertValidPlan(doc: PlanDocument, context: PlanValidationContext): ValidatedPlan {
  const { problems, plan } = validatePlan(doc, context);
  if (problems.length > 0) {
    const first = problems[0]!;
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problems)` : '';
    throw new HavenError(
      first.code === 'machine_busy' ? 'conflict' : 'validation_failed',
      `Plan '${plan.name || '?'}' is refused: ${first.message}${more}`,
      { field: first.field, problems },
    );
  }
  return plan;
}

/** The exportable document of a stored plan: machines by name, actions in their order. */
export function planToDocument(
  plan: { name: string; description: string; groups: readonly RecoveryPlanGroup[] },
  machineName: (id: string) => string,
): PlanDocument {
  return {
    name: plan.name,
    description: plan.description,
    groups: plan.groups.map((group) => ({
      name: group.name,
      machines: group.machineIds.map(machineName),
      before: group.before.map(actionDocument),
      after: group.after.map(actionDocument),
    })),
  };
}

function actionDocument(action: RecoveryPlanAction): PlanActionDocument {
  const timeout = action.timeoutSeconds === null ? {} : { timeoutSeconds: action.timeoutSeconds };
  switch (action.kind) {
    case 'manual':
      return { kind: 'manual', name: action.name, text: action.text };
    case 'script':
      return { kind: 'script', name: action.name, script: action.script, ...timeout };
    case 'inline-script':
      // Exported as written, so importing it back gives the refusal that says how to register it.
      return { kind: 'script', name: action.name, text: action.text, ...timeout };
  }
}

/**
 * Why a stored plan cannot run as it is: actions holding inline commands
 * (stored before scripts were registered) or naming scripts no longer
 * registered. Empty when it can.
 */
export function planScriptProblems(groups: readonly RecoveryPlanGroup[], scripts: KnownScripts): string[] {
  return groups.flatMap((group) =>
    (['before', 'after'] as const).flatMap((side) =>
      group[side].flatMap((action) => {
        const where = `group '${group.name}', action '${action.name}' ${side} its machines`;
        if (action.kind === 'inline-script')
          return [
            `${where} holds an inline command, which is never run: an admin registers it as a script in ` +
              `${scripts.dir}, then the plan is replaced with 'script: NAME' in that action`,
          ];
        if (action.kind === 'script' && !scripts.names.has(action.script))
          return [`${where} names script '${action.script}', which is not registered in ${scripts.dir}`];
        return [];
      }),
    ),
  );
}
