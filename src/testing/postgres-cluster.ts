import { execFile, execFileSync } from 'node:child_process';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { findPostgresBinary } from '../store/dialect/postgres/index.ts';

const run = promisify(execFile);

export interface PostgresCluster {
  /** URL of the cluster's `postgres` database (superuser `postgres`, trust auth, 127.0.0.1). */
  url: string;
  /** Creates a fresh empty database and returns its URL: one per test keeps tests independent. */
  createDatabase(): Promise<string>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/**
 * A throwaway PostgreSQL cluster for tests: initdb in a temp dir, started with
 * pg_ctl on a free loopback port, socket in the same dir, durability off (the
 * data dies with the test anyway). initdb refuses to run as root, so under
 * root the programs run as the `postgres` user.
 */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  const asRoot = process.getuid?.() === 0;
  const command = (program: string, args: string[]): [string, string[]] =>
    asRoot
      ? ['runuser', ['-u', 'postgres', '--', findPostgresBinary(program), ...args]]
      : [findPostgresBinary(program), args];
  const pgctl = (args: string[]) => {
    const [file, argv] = command('pg_ctl', args);
    return run(file, argv);
  };

  try {
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      await chown(dir, uid, gid);
    }
    const [initdb, initArgs] = command('initdb', [
      '-D',
      data,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
      '--no-instructions',
    ]);
    await run(initdb, initArgs);

    // A free port can be taken between probing and binding: retry a few times.
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const options = [
        `-p ${port}`,
        `-k ${dir}`,
        '-c listen_addresses=127.0.0.1',
        '-c fsync=off',
        '-c synchronous_commit=off',
        '-c full_page_writes=off',
      ].join(' ');
      try {
        await pgctl(['-D', data, '-l', log, '-w', '-t', '60', '-o', options, 'start']);
        break;
      } catch (error) {
        if (attempt >= 3) {
          const serverLog = await readFile(log, 'utf8').catch(() => '');
          throw new Error(`PostgreSQL test cluster did not start: ${(error as Error).message}\n${serverLog}`);
        }
      }
    }

    const stopNow = () => {
      const [file, argv] = command('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      try {
        execFileSync(file, argv, { stdio: 'ignore' });
      } catch {
        // already stopped
      }
    };
    // If the test process exits without stop(), do not leave a server behind.
    process.once('exit', stopNow);

    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    let databases = 0;
    let stopped = false;
    return {
      url,
      async createDatabase() {
        const name = `haven_test_${++databases}`;
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          await client.query(`create database ${name}`);
        } finally {
          await client.end();
        }
        return `postgres://postgres@127.0.0.1:${port}/${name}`;
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        process.removeListener('exit', stopNow);
        await pgctl(['-D', data, '-m', 'fast', '-w', 'stop']).catch(stopNow);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
