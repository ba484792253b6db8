/**
 * Real vault and host processes for restart-race tests.
 *   vault <dataDir> <controlPort>          prints {"url": …}
 *   host <dataDir> <replicationPort> [<apiUrl> <token> <name>]   prints {"ready": true}
 * HAVEN_TEST_HOST_WAIT_MS bounds how long carried-over jobs wait for hosts.
 */
import { startVault } from '../app/start-vault.ts';
import { startHost } from '../host/index.ts';

const [mode, dataDir, port, apiUrl, token, name] = process.argv.slice(2);
if (mode === 'vault') {
  const vault = await startVault({
    dataDir: dataDir!,
    port: 0,
    controlPort: Number(port),
    jobPollMs: 50,
    heartbeatIntervalMs: 500,
    monitorIntervalMs: 500,
    ...(process.env.HAVEN_TEST_HOST_WAIT_MS
      ? { hostReconnectWaitMs: Number(process.env.HAVEN_TEST_HOST_WAIT_MS) }
      : {}),
  });
  process.stdout.write(`${JSON.stringify({ url: vault.url })}\n`);
  process.on('SIGTERM', () => void vault.stop().then(() => process.exit(0)));
} else {
  const host = await startHost({
    dataDir: dataDir!,
    ...(apiUrl ? { enrol: { apiUrl, token: token!, name: name!, site: name! } } : {}),
    replicationListen: { host: '127.0.0.1', port: Number(port) },
    senderPollMs: 25,
    log: () => {},
  });
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  process.on('SIGTERM', () => void host.stop().then(() => process.exit(0)));
}
