import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BmcAccess } from '../host/host-services.ts';
import { collectOutput, freePort } from './child-process.ts';

/**
 * A real BMC peer for tests: OpenIPMI's `ipmi_sim` (Debian `openipmi`)
 * answering IPMI v2.0 over LAN on localhost, whose chassis control is a
 * script that makes a QEMU process the machine's power: power on starts it
 * (booting from the network when the next boot was set to PXE, once), a hard
 * power off SIGKILLs it, a soft off presses its ACPI power button through
 * its monitor. The guest has an IPMI KCS interface connected to the
 * simulator, as a server has its BMC. No disk: nothing here needs an OS.
 */
export interface IpmiSimulator {
  access: BmcAccess;
  /** What the simulator asked of the machine's power, one `get …`/`set …` line each, and `boot n|c` per start. */
  calls(): Promise<string[]>;
  /** The QEMU process while the machine is powered on, else null. */
  qemuPid(): Promise<number | null>;
  output(): string;
  stop(): Promise<void>;
}

export async function startIpmiSimulator(dir: string): Promise<IpmiSimulator> {
  await mkdir(join(dir, 'state'), { recursive: true });
  const [lanPort, serialPort, monitorPort] = [await freePort(), await freePort(), await freePort()];
  const password = randomBytes(9).toString('base64url');
  // ipmi_sim lacks Get Channel Cipher Suites (ipmitool would wait for it on every call): suite 3 it has.
  const access: BmcAccess = {
    protocol: 'ipmi',
    address: '127.0.0.1',
    port: lanPort,
    user: 'haven',
    cipherSuite: 3,
    password,
  };
  const pidFile = join(dir, 'qemu.pid');
  const script = join(dir, 'chassis-control');
  await writeFile(
    script,
    `#!/bin/bash
# ipmi_sim's chassis control: ipmi_sim_chassiscontrol DEVICE get|set PARM [VALUE] ...
dir=${dir}
echo "$*" >> "$dir/chassis.log"
shift
op=$1
shift
pid() { cat ${pidFile} 2>/dev/null; }
# A zombie no init reaped yet is off.
alive() { p=$(pid); [ -n "$p" ] && [ -r /proc/$p/stat ] && ! grep -q ') Z ' /proc/$p/stat; }
start() {
  order=c
  [ "$(cat "$dir/boot" 2>/dev/null)" = pxe ] && order=n
  rm -f "$dir/boot"
  echo "boot $order" >> "$dir/chassis.log"
  qemu-system-x86_64 -nodefaults -display none -machine accel=kvm:tcg -m 64 -boot order=$order \\
    -monitor tcp:127.0.0.1:${monitorPort},server,nowait \\
    -chardev socket,id=ipmi0,host=127.0.0.1,port=${serialPort},reconnect=10 \\
    -device ipmi-bmc-extern,chardev=ipmi0,id=bmc0 -device isa-ipmi-kcs,bmc=bmc0 \\
    -daemonize -pidfile ${pidFile}
}
case $op in
get)
  for parm in "$@"; do
    case $parm in
    power) if alive; then echo power:1; else echo power:0; fi ;;
    boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
    esac
  done
  ;;
set)
  while [ $# -ge 2 ]; do
    case $1 in
    power)
      if [ "$2" = 1 ]; then
        alive || start
      elif alive; then
        kill -9 "$(pid)"
        for _ in $(seq 100); do alive || break; sleep 0.05; done
      fi
      ;;
    shutdown) alive && printf 'system_powerdown\\n' > /dev/tcp/127.0.0.1/${monitorPort} ;;
    boot) echo "$2" > "$dir/boot" ;;
    esac
    shift 2
  done
  ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  const conf = join(dir, 'lan.conf');
  await writeFile(
    conf,
    `name "haven-test-bmc"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 ${lanPort}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  serial 15 127.0.0.1 ${serialPort} codec VM
  chassis_control "${script} 0x20"
  user 2 true "${access.user}" "${password}" admin 10 none md2 md5 straight
`,
  );
  const emu = join(dir, 'bmc.emu');
  await writeFile(
    emu,
    'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n',
  );
  const sim = spawn('ipmi_sim', ['-c', conf, '-f', emu, '-s', join(dir, 'state'), '-n'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { output, exited } = collectOutput(sim);
  const qemuPid = async () => {
    const text = await readFile(pidFile, 'utf8').catch(() => '');
    const pid = Number.parseInt(text, 10);
    if (!Number.isInteger(pid)) return null;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
    return stat !== null && !/\) Z /.test(stat) ? pid : null;
  };
  const stop = async () => {
    const pid = await qemuPid();
    if (pid !== null) process.kill(pid, 'SIGKILL');
    if (sim.exitCode === null && sim.signalCode === null) {
      sim.kill('SIGTERM');
      await exited;
    }
  };
  // Its LAN port is UDP (nothing to connect to): a simulator that refused its configuration has exited by now.
  await new Promise((resolve) => setTimeout(resolve, 300));
  if (sim.exitCode !== null) {
    await stop();
    throw new Error(`ipmi_sim exited with ${sim.exitCode}:\n${output()}`);
  }
  return {
    access,
    calls: async () =>
      (await readFile(join(dir, 'chassis.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean),
    qemuPid,
    output,
    stop,
  };
}
