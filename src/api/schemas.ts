import { z } from 'zod';
import {
  DRILL_POINT_CHOICES,
  DRILL_STATES,
  type DrillPointChoice,
  MAX_DRILL_TIME_LIMIT_SECONDS,
  MAX_DRILLS_PER_HOST,
  MIN_DRILL_TIME_LIMIT_SECONDS,
} from '../domain/drill.ts';
import {
  ALL_OPERATIONS,
  DISK_ID_PATTERN,
  IPMI_PORT,
  isServerDevicePath,
  JOB_STATES,
  RECOVERY_POINT_OPTIONS,
  type RecoveryPointOption,
  SERVER_DEVICE_PATTERN,
} from '../domain/index.ts';
import { MAX_SCRIPT_TIMEOUT_SECONDS } from '../domain/recovery-plan-validation.ts';
import { REPLICATION_RESOLUTIONS } from '../domain/replication-history.ts';
import {
  DEFAULT_VIEW_TTL_SECONDS,
  MAX_VIEW_TTL_SECONDS,
  MIN_VIEW_TTL_SECONDS,
} from '../vault/point-access.ts';

/** Request bodies and queries of the REST API; the OpenAPI document is generated from these. */

/** A schema with the example the OpenAPI document and docs/api.md show for it (a test checks it is accepted). */
export function withExample<S extends z.ZodType>(schema: S, example: z.input<S>): S {
  return schema.meta({ examples: [example] });
}

export const name = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'lowercase letters, digits and inner hyphens only');

export const ipConfig = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('dhcp') }),
  z.object({
    mode: z.literal('static'),
    address: z.string().min(2),
    prefixLength: z.number().int().min(0).max(128),
    gateway: z.string().nullable().default(null),
    dns: z.array(z.string()).default([]),
  }),
]);

export const nicSettings = z.object({
  network: z.string().min(1),
  recoveryNetwork: z.string().min(1).nullable().default(null),
  mac: z
    .string()
    .regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, 'a MAC address like 52:54:00:12:34:56')
    .nullable()
    .default(null),
  ip: ipConfig.default({ mode: 'dhcp' }),
});

export const recoverySettings = z.object({
  targetName: z.string().min(1).max(63),
  cpus: z.number().int().min(1).max(256),
  memoryMiB: z.number().int().min(1),
  nics: z.array(nicSettings).default([]),
  boot: z
    .object({
      kernel: z.string().min(1),
      initrd: z.string().min(1).nullable().default(null),
      cmdline: z.string().default(''),
    })
    .nullable()
    .optional(),
});

/** A file name that is safe as one path component: no separators, no leading dot (no `..`, no hidden files). */
export const fileSafeName = z
  .string()
  .min(1)
  .max(64)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
    'letters, digits, dot, underscore and hyphen, not starting with a dot or hyphen',
  );

export const diskInput = z.object({
  id: z
    .string()
    .regex(
      DISK_ID_PATTERN,
      "1 to 60 letters, digits, '_' or '-' (a disk id becomes a file name on the host)",
    ),
  sizeBytes: z
    .number()
    .int()
    .positive()
    .max(2 ** 50)
    .multipleOf(512, 'a whole number of 512-byte sectors'),
  /** Omitted: a sparse image `<name>-<id>.img` in the host's first storage folder, made when missing. */
  source: z.string().min(1).optional(),
  hasSnapshots: z.boolean().default(false),
});

export const createMachine = withExample(
  z.object({
    name,
    hostId: z.string().min(1),
    osFamily: z.enum(['linux', 'windows', 'other']).default('linux'),
    disks: z
      .array(diskInput)
      .min(1)
      .superRefine((disks, ctx) => {
        const seen = new Set<string>();
        disks.forEach((disk, i) => {
          if (seen.has(disk.id)) {
            ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `disk id '${disk.id}' is used twice` });
          }
          seen.add(disk.id);
        });
      }),
    recoverySettings: recoverySettings.optional(),
  }),
  {
    name: 'web-01',
    hostId: 'kvm-a',
    osFamily: 'linux',
    disks: [{ id: 'disk0', sizeBytes: 21_474_836_480 }],
    recoverySettings: { targetName: 'web-01', cpus: 2, memoryMiB: 2048, nics: [{ network: 'lan' }] },
  },
);

/** One protected block device of a server: the disk id Haven gives it, the device md mirrors, its size. */
export const serverDiskInput = z.object({
  id: diskInput.shape.id,
  device: z
    .string()
    .max(200)
    .regex(
      SERVER_DEVICE_PATTERN,
      'an absolute block device path under /dev, like /dev/sda or /dev/disk/by-id/…',
    )
    .refine(isServerDevicePath, "no '..' in the device path"),
  sizeBytes: diskInput.shape.sizeBytes,
});

/**
 * A server's BMC: where its primary-site host reaches it over IPMI LAN
 * (`ipmitool -I lanplus`), as whom, and the password (stored apart from the
 * machine, never shown back).
 */
export const serverBmcInput = z.strictObject({
  protocol: z.literal('ipmi'),
  address: z
    .string()
    .max(253)
    // An IPv6 address without brackets: each value is one argument of ipmitool.
    .regex(/^[A-Za-z0-9.:][A-Za-z0-9.:_-]*$/, 'a host name or IP address (IPv6 without brackets)'),
  port: z.number().int().min(1).max(65_535).default(IPMI_PORT),
  user: z
    .string()
    .min(1)
    .max(64)
    .refine((user) => !user.startsWith('-'), "a user name (not starting with '-')"),
  /** The RMCP+ cipher suite (ipmitool -C); null: ipmitool asks the BMC. */
  cipherSuite: z.number().int().min(0).max(17).nullable().default(null),
  password: z.string().min(1).max(128),
});

export const updateServer = withExample(
  z.strictObject({
    /** null: the server has no BMC any more (its stored password is deleted). */
    bmc: serverBmcInput.nullable(),
  }),
  {
    bmc: {
      protocol: 'ipmi',
      address: '10.0.9.21',
      port: 623,
      user: 'haven',
      cipherSuite: 17,
      password: 'correct-horse',
    },
  },
);

export const addServer = withExample(
  z.object({
    name,
    /** The primary site: the server's NBD legs connect to a host there. */
    siteId: z.string().min(1),
    /** That host (by id or name); default the site's first connected host. */
    hostId: z.string().min(1).optional(),
    disks: z
      .array(serverDiskInput)
      .min(1)
      .max(32)
      .superRefine((disks, ctx) => {
        const ids = new Set<string>();
        const devices = new Set<string>();
        disks.forEach((disk, i) => {
          if (ids.has(disk.id)) {
            ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `disk id '${disk.id}' is used twice` });
          }
          if (devices.has(disk.device)) {
            ctx.addIssue({
              code: 'custom',
              path: [i, 'device'],
              message: `device '${disk.device}' is named twice`,
            });
          }
          ids.add(disk.id);
          devices.add(disk.device);
        });
      }),
    /** null: synchronous (order kept); n: md write-behind of up to n writes (weaker: a point may lack acknowledged writes). */
    writeBehind: z.number().int().min(1).max(16_383).nullable().default(null),
    /** nbd-client's timeout: a cut link fails the NBD leg after this long instead of hanging the server's I/O. */
    nbdTimeoutSeconds: z.number().int().min(5).max(3600).default(30),
    /** Its BMC, for a verified fence, a planned shutdown and failback; null: none (its power is never seen). */
    bmc: serverBmcInput.nullable().default(null),
    /** The VM the server becomes at the recovery site. */
    recoverySettings: recoverySettings.optional(),
  }),
  {
    name: 'db-01',
    siteId: 'dc1',
    hostId: 'kvm-a',
    disks: [{ id: 'disk0', device: '/dev/sda', sizeBytes: 68_719_476_736 }],
    writeBehind: null,
    nbdTimeoutSeconds: 30,
    bmc: {
      protocol: 'ipmi',
      address: '10.0.9.21',
      port: 623,
      user: 'haven',
      cipherSuite: null,
      password: 'correct-horse',
    },
    recoverySettings: { targetName: 'db-01', cpus: 4, memoryMiB: 8192, nics: [{ network: 'lan' }] },
  },
);

export const importMachine = withExample(
  z.object({
    hostId: z.string().min(1),
    /** The libvirt domain's name on that host. */
    domain: z.string().min(1).max(200),
    name: name.optional(),
    osFamily: z.enum(['linux', 'windows', 'other']).optional(),
  }),
  { hostId: 'kvm-a', domain: 'db-01' },
);

/**
 * PATCH bodies name only what changes: no field has a default (zod's
 * `.partial()` keeps defaults, so `{"cpus":2}` would come back with `nics: []`
 * and wipe the stored NICs). The handler merges what was given onto what is stored.
 */
export const updateRecoverySettings = recoverySettings
  .extend({ nics: z.array(nicSettings).optional() })
  .partial();

export const startMachine = z.object({});

export const stopMachine = z.object({
  /** How long the guest gets to power itself down after the ACPI request; then the stop fails, the machine running. */
  timeoutSeconds: z.number().int().min(1).max(3600).default(120),
  /** Power the machine off when the guest has not powered down after this long (instead of failing). */
  forceOffAfterSeconds: z.number().int().min(0).max(3600).optional(),
});

export const machineConsole = z.object({
  /** The last N lines only (default: all the current run's, up to 1 MiB; with follow, 50). */
  tail: z.coerce.number().int().min(0).max(100_000).optional(),
  /** `drill`: the console of the test failover's drill copy instead of the machine's (404 when no drill runs). */
  copy: z.enum(['running', 'drill']).optional(),
  /** Keep the answer open and send new lines as server-sent events (`line`). */
  follow: z
    .enum(['1', '0', 'true', 'false'])
    .transform((v) => v === '1' || v === 'true')
    .optional(),
});

export const replicationHistory = z.object({
  /** From when (ISO time; default: an hour ago). The vault keeps 30 days. */
  since: z.iso.datetime({ offset: true }).optional(),
  /** Seconds per sample: 10 (kept an hour), 60 (a day) or 600 (30 days); default the finest that covers `since`. */
  resolution: z.coerce.number().pipe(z.literal(REPLICATION_RESOLUTIONS)).optional(),
});

export const listMachines = z.object({
  state: z.string().optional(),
  hostId: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(10_000).optional(),
  offset: z.coerce.number().int().min(0).optional(),
});

export const recoveryPointChoice = z
  .object({
    option: z.enum(RECOVERY_POINT_OPTIONS as [RecoveryPointOption, ...RecoveryPointOption[]]),
    pointId: z.string().min(1).optional(),
  })
  .refine((c) => c.option !== 'custom' || c.pointId !== undefined, {
    message: "option 'custom' needs pointId",
    path: ['pointId'],
  });

/** Opening a recovery point to NBD clients (`haven view`): multi-machine options need a group's cut, not one view. */
export const openPointView = withExample(
  z.object({
    recoveryPoint: z.union([
      z.object({ option: z.enum(['latest', 'latest-processed', 'latest-app-consistent']) }),
      z.object({ option: z.literal('custom'), pointId: z.string().min(1) }),
    ]),
    writable: z.boolean().default(false),
    expiresInSeconds: z
      .number()
      .int()
      .min(MIN_VIEW_TTL_SECONDS)
      .max(MAX_VIEW_TTL_SECONDS)
      .default(DEFAULT_VIEW_TTL_SECONDS),
  }),
  { recoveryPoint: { option: 'latest-app-consistent' }, writable: false, expiresInSeconds: 3600 },
);

export const pointViewQuery = z.object({ machineId: z.string().min(1).optional() });

export const enableReplication = withExample(
  z.object({
    recoveryHostId: z.string().min(1),
    policyId: z.string().min(1),
  }),
  { recoveryHostId: 'kvm-b', policyId: 'default' },
);

export const testFailover = withExample(
  z.object({
    recoveryPoint: recoveryPointChoice,
    network: z.string().min(1).optional(),
  }),
  { recoveryPoint: { option: 'latest' }, network: 'dc2-test' },
);

export const cleanupTestFailover = z.object({ notes: z.string().max(10_000).default('') });

export const failover = withExample(
  z.object({
    recoveryPoint: recoveryPointChoice,
    shutdownSource: z.boolean().default(true),
  }),
  { recoveryPoint: { option: 'latest-app-consistent' }, shutdownSource: true },
);

export const plannedFailover = z
  .object({
    /** A guest that ignores the ACPI power-down request is powered off after this many seconds. */
    forceOffAfterSeconds: z.number().int().min(1).max(3600).optional(),
  })
  .strict();

export const changeRecoveryPoint = withExample(z.object({ recoveryPoint: recoveryPointChoice }), {
  recoveryPoint: { option: 'custom', pointId: 'pt-000412' },
});

export const failback = withExample(
  z.object({
    dataSync: z.enum(['before-failover', 'full-download']),
    alternateHostId: z.string().min(1).optional(),
  }),
  { dataSync: 'before-failover' },
);

export const reprotect = z.object({
  alternateHostId: z.string().min(1).optional(),
  fullResync: z.boolean().default(false),
});

export const resync = z.object({ full: z.boolean().default(false) });

export const empty = z.object({}).strict();

export const createPolicy = withExample(
  z.object({
    name,
    rpoThresholdSeconds: z.number().int().positive(),
    retentionSeconds: z.number().int().positive(),
    appConsistentFrequencySeconds: z.number().int().min(0),
  }),
  { name: 'gold', rpoThresholdSeconds: 120, retentionSeconds: 172_800, appConsistentFrequencySeconds: 900 },
);

export const updatePolicy = createPolicy.partial();

export const createSite = withExample(
  z.object({
    name,
    role: z.enum(['primary', 'recovery']),
    networkMapping: z.record(z.string(), z.string()).default({}),
    testNetwork: z.string().min(1).nullable().default(null),
  }),
  { name: 'dc2', role: 'recovery', networkMapping: { lan: 'lan-dr' }, testNetwork: 'dc2-test' },
);

export const updateSite = z.object({
  networkMapping: z.record(z.string().min(1), z.string().min(1)).optional(),
  testNetwork: z.string().min(1).nullable().optional(),
});

export const createEnrolmentToken = withExample(
  z.object({
    siteId: z.string().min(1),
    hostName: name.optional(),
    ttlSeconds: z
      .number()
      .int()
      .min(60)
      .max(7 * 24 * 3600)
      .default(3600),
  }),
  { siteId: 'dc2', hostName: 'kvm-b', ttlSeconds: 3600 },
);

export const enrolHost = withExample(
  z.object({
    name,
    capabilities: z.array(z.string()).default([]),
    version: z.string().nullable().default(null),
    replicationAddress: z.string().nullable().default(null),
    /** Folders the host attaches disk images from (it reports them again in every inventory). */
    storageFolders: z.array(z.string().min(1).max(4096)).max(64).default([]),
  }),
  {
    name: 'kvm-b',
    capabilities: ['qemu'],
    version: '0.1.0',
    replicationAddress: '10.0.2.11:8442',
    storageFolders: ['/var/lib/haven/images'],
  },
);

export const updateHost = z.object({
  maxProtectedDisks: z.number().int().min(1).max(10_000).optional(),
});

export const createToken = withExample(
  z.object({
    name: z.string().min(1).max(100),
    role: z.enum(['admin', 'operator', 'viewer']),
  }),
  { name: 'ci-reader', role: 'viewer' },
);

export const listJobs = z.object({
  state: z.enum(JOB_STATES).optional(),
  targetId: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

export const listScriptRuns = z.object({
  jobId: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

export const listAlerts = z.object({
  open: z.enum(['true', 'false']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

/** A file name in the vault's backups folder (DATA/backups); never a path the vault would write anywhere. */
export const backupVault = z.object({ file: fileSafeName.optional() });

export const lifecycleOperation = z.enum(ALL_OPERATIONS as [string, ...string[]]);

// Recovery plans: the shape only; the domain (recovery-plan-validation.ts) checks the rest and names every problem.
export const planAction = z.object({
  kind: z.enum(['script', 'manual']),
  name: z.string(),
  /** manual: the instructions (a script action with text is refused: scripts are registered by an admin). */
  text: z.string().optional(),
  /** script: the name of a registered script (GET /scripts). */
  script: z.string().optional(),
  timeoutSeconds: z.number().nullable().optional(),
});

export const planGroup = z.object({
  name: z.string(),
  /** Machine names or ids. */
  machines: z.array(z.string()),
  before: z.array(planAction).optional(),
  after: z.array(planAction).optional(),
});

export const planDocument = withExample(
  z.object({
    name: z.string(),
    description: z.string().optional(),
    groups: z.array(planGroup),
  }),
  {
    name: 'web tier',
    description: 'Database first, then the web servers',
    groups: [
      { name: 'db', machines: ['db-01'] },
      {
        name: 'web',
        machines: ['web-01'],
        before: [{ kind: 'manual', name: 'check DNS', text: 'Point www at the recovery site' }],
      },
    ],
  },
);

export const planExport = z.object({ format: z.enum(['json', 'yaml']).default('json') });

export const planImport = withExample(
  z.object({
    format: z.enum(['json', 'yaml']),
    /** The exported document as text. */
    content: z.string().min(1).max(1_000_000),
    /** Replace the plan of the same name if it exists (otherwise that is a conflict). */
    replace: z.boolean().default(false),
  }),
  {
    format: 'yaml',
    content: 'name: web tier\ngroups:\n  - name: web\n    machines: [web-01]\n',
    replace: false,
  },
);

// Drills: the shape and ranges here; the vault (src/vault/drills/drill-schedule-input.ts) checks
// what needs the store (the target, the script registry) and the cadence's words.
const drillCadence = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('daily'), at: z.string().max(10), timeZone: z.string().max(100) }),
  z.object({ kind: z.literal('every'), hours: z.number() }),
]);

const drillScript = z.object({
  /** A script an admin registered (GET /scripts), run in the test network with HAVEN_DRILL_ADDRESS. */
  name: z.string().min(1).max(200),
  timeoutSeconds: z.number().int().min(1).max(MAX_SCRIPT_TIMEOUT_SECONDS).default(300),
});

/** A drill's settings: a schedule's, or those of a drill run now. */
const drillSettings = {
  point: z
    .enum(DRILL_POINT_CHOICES as [DrillPointChoice, ...DrillPointChoice[]])
    .default('latest-crash-consistent'),
  /** Null: the recovery site's test network. */
  testNetwork: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'a network name: letters, digits, dot, underscore, hyphen')
    .nullable()
    .default(null),
  timeLimitSeconds: z
    .number()
    .int()
    .min(MIN_DRILL_TIME_LIMIT_SECONDS)
    .max(MAX_DRILL_TIME_LIMIT_SECONDS)
    .default(1800),
  checks: z
    .object({
      filesystems: z.boolean().default(true),
      script: drillScript.nullable().default(null),
      /** What on the console says the machine is up (a regular expression; null: any output), and how long to wait. */
      boot: z
        .object({
          consolePattern: z.string().min(1).max(500).nullable().default(null),
          timeoutSeconds: z.number().int().min(5).max(MAX_DRILL_TIME_LIMIT_SECONDS).default(120),
        })
        .optional(),
    })
    .default({ filesystems: true, script: null }),
};

export const drillSchedule = withExample(
  z.object({
    name,
    /** What it drills: a machine or a recovery plan, by name or id. */
    target: z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('machine'), machine: z.string().min(1).max(200) }),
      z.object({ kind: z.literal('plan'), plan: z.string().min(1).max(200) }),
    ]),
    cadence: drillCadence,
    ...drillSettings,
    maxConcurrentPerHost: z.number().int().min(1).max(MAX_DRILLS_PER_HOST).default(2),
    /** A machine already in a test failover an operator started: wait for it to end, or skip this run. */
    onConflict: z.enum(['wait', 'skip']).default('wait'),
    enabled: z.boolean().default(true),
  }),
  {
    name: 'nightly-web',
    target: { kind: 'machine', machine: 'web-01' },
    cadence: { kind: 'daily', at: '02:00', timeZone: 'Europe/Amsterdam' },
    point: 'latest-app-consistent',
    testNetwork: null,
    timeLimitSeconds: 1800,
    checks: { filesystems: true, script: { name: 'check-web', timeoutSeconds: 120 } },
    maxConcurrentPerHost: 2,
    onConflict: 'wait',
    enabled: true,
  },
);

export const runDrill = withExample(z.object(drillSettings), {
  point: 'random-retained',
  timeLimitSeconds: 900,
  checks: { filesystems: true, script: null, boot: { consolePattern: 'login:', timeoutSeconds: 180 } },
});

export const listDrills = z.object({
  /** Drills of this machine (also as a member of a plan drill), by name or id. */
  machine: z.string().optional(),
  plan: z.string().optional(),
  schedule: z.string().optional(),
  state: z.enum(DRILL_STATES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

export const drillReportQuery = z.object({ format: z.enum(['json', 'markdown', 'html']).default('json') });
