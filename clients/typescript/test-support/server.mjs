// Runs the real Sealtrail server for a test: a temporary data directory, a free port that
// stays the same across restarts (so a client can watch it go away and come back), an API
// key, and a reader for what arrived.

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * The server binary: $SEALTRAIL_TEST_BIN (the project's test command sets it; the server
 * ignores SEALTRAIL_TEST_* variables, every other SEALTRAIL_* is its configuration), else
 * the workspace's debug build.
 */
export const SEALTRAIL_BIN =
  process.env.SEALTRAIL_TEST_BIN ||
  fileURLToPath(new URL('../../../target/debug/sealtrail', import.meta.url));

// Servers still running when the test process exits (a failed assertion, a crash) are
// killed with it, and temporary directories removed, so no test leaves anything behind.
const running = new Set();
const temporaryDirs = new Set();
process.once('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
  for (const dir of temporaryDirs) rmSync(dir, { recursive: true, force: true });
});

const SERVER_ENV = {
  ...process.env,
  // Reads would otherwise add access-log events to the log the tests count.
  SEALTRAIL_ACCESS_LOG__ENABLED: 'false',
  RUST_LOG: process.env.RUST_LOG ?? 'warn',
};

/** A free TCP port on 127.0.0.1: bound to 0, then released for the server to take. */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A fresh temporary directory, removed when the test process exits. */
export function tempDir(prefix = 'sealtrail-ts-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporaryDirs.add(dir);
  return dir;
}

/**
 * A Sealtrail server for one test file. Not started yet: call start().
 * @param {{tenant?: string}} [options] a tenant to bind the key to (default: an unbound key)
 */
export async function createSealtrailServer({ tenant } = {}) {
  if (!existsSync(SEALTRAIL_BIN)) {
    throw new Error(`no Sealtrail binary at ${SEALTRAIL_BIN}; build it (cargo build) or set SEALTRAIL_TEST_BIN`);
  }
  const root = tempDir();
  const dataDir = join(root, 'data');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const keyArgs = ['keys', 'create', '--data-dir', dataDir, '--scopes', 'ingest,read'];
  if (tenant) keyArgs.push('--tenant', tenant);
  const { stdout } = await run(SEALTRAIL_BIN, keyArgs, { env: SERVER_ENV });
  const apiKey = stdout.trim();
  let child = null;
  let stderrTail = '';

  const server = {
    url,
    port,
    apiKey,
    dataDir,
    root,

    /** Starts the server and resolves once it listens. */
    async start() {
      if (child) throw new Error('already running');
      // Right after a stop the port can take a moment to be free again.
      for (let attempt = 0; ; attempt++) {
        try {
          child = await startProcess();
          return;
        } catch (error) {
          child = null;
          if (attempt >= 20) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    },

    /** Stops it with SIGTERM (graceful) and waits for the exit. */
    async stop() {
      if (!child) return;
      const exiting = child;
      child = null;
      const exited = new Promise((resolve) => exiting.once('exit', resolve));
      exited.then(() => running.delete(exiting));
      exiting.kill('SIGTERM');
      const timer = setTimeout(() => exiting.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },

    /** Stops it and removes its files. */
    async dispose() {
      await server.stop();
      rmSync(root, { recursive: true, force: true });
    },

    /**
     * Every event of a tenant, in the server's order (seq ascending).
     * @param {string} tenantId
     */
    async listEvents(tenantId) {
      const events = [];
      let cursor = null;
      do {
        const query = new URLSearchParams({ tenant_id: tenantId, limit: '1000', order: 'asc' });
        if (cursor) query.set('cursor', cursor);
        const response = await fetch(`${url}/v1/events?${query}`, {
          headers: { authorization: `Bearer ${apiKey}` },
        });
        const body = await response.json();
        if (!response.ok) throw new Error(`GET /v1/events: ${response.status} ${JSON.stringify(body)}`);
        events.push(...body.events);
        cursor = body.next_cursor;
      } while (cursor);
      return events.sort((a, b) => a.seq - b.seq);
    },

    get stderr() {
      return stderrTail;
    },
  };

  function startProcess() {
    return new Promise((resolve, reject) => {
      const proc = spawn(SEALTRAIL_BIN, ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`], {
        env: SERVER_ENV,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      running.add(proc);
      proc.once('exit', () => running.delete(proc));
      proc.stderr.on('data', (chunk) => {
        stderrTail = (stderrTail + chunk).slice(-4000);
      });
      const lines = createInterface({ input: proc.stdout });
      const onExit = (code) => reject(new Error(`sealtrail serve exited with ${code} before listening: ${stderrTail}`));
      proc.once('exit', onExit);
      proc.once('error', reject);
      lines.once('line', (line) => {
        proc.off('exit', onExit);
        if (!line.startsWith('sealtrail listening on')) {
          proc.kill('SIGKILL');
          reject(new Error(`unexpected first line from sealtrail serve: ${line}`));
          return;
        }
        resolve(proc);
      });
    });
  }

  return server;
}
