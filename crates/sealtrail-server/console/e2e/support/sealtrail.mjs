// The real Sealtrail server for the console's tests: a temporary data directory, API keys
// made with the CLI before it starts, a configuration file, and a port that stays the same
// across restarts. Unlike clients/typescript/test-support/server.mjs it keeps the access log
// on (the access page shows it) and can take sinks.

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The repository's root (this file is crates/sealtrail-server/console/e2e/support/). */
export const REPO_ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));

/** The server binary: $SEALTRAIL_TEST_BIN (set by `cargo xtask test`), else the debug build. */
export const SEALTRAIL_BIN = process.env.SEALTRAIL_TEST_BIN || join(REPO_ROOT, 'target/debug/sealtrail');

const STOP_GRACE_MS = 10_000;
const START_ATTEMPTS = 30;
const START_RETRY_MS = 100;

// Killed and removed with the test process, however it ends.
const running = new Set();
const temporaryDirs = new Set();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of temporaryDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * The server's environment: every SEALTRAIL_* variable is its configuration, so the test
 * runner's own (SEALTRAIL_TEST_CHROMIUM, SEALTRAIL_TEST_CONSOLE_SCREENSHOTS…) are left out.
 */
function serverEnv() {
  const env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('SEALTRAIL_')) env[name] = value;
  }
  env.RUST_LOG = process.env.RUST_LOG ?? 'warn';
  return env;
}

/** A free TCP port on 127.0.0.1 (bound to 0, then released for the server). */
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

export function tempDir(prefix = 'sealtrail-console-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporaryDirs.add(dir);
  return dir;
}

/**
 * A server, not started yet.
 * @param {{keys: Record<string, {scopes: string, tenant?: string}>, config?: string}} options
 *   keys: made with `sealtrail keys create` (name → secret and id in `server.keys`);
 *   config: TOML text for `--config`.
 */
export async function createSealtrailServer({ keys, config = '' }) {
  if (!existsSync(SEALTRAIL_BIN)) {
    throw new Error(`no Sealtrail binary at ${SEALTRAIL_BIN}; run cargo build -p sealtrail-cli or set SEALTRAIL_TEST_BIN`);
  }
  const root = tempDir();
  const dataDir = join(root, 'data');
  const configPath = join(root, 'sealtrail.toml');
  writeFileSync(configPath, config);
  const port = await freePort();
  const made = {};
  for (const [name, { scopes, tenant }] of Object.entries(keys)) {
    const args = ['keys', 'create', '--data-dir', dataDir, '--scopes', scopes, '--description', `console e2e: ${name}`];
    if (tenant) args.push('--tenant', tenant);
    const { stdout } = await run(SEALTRAIL_BIN, args, { env: serverEnv() });
    const secret = stdout.trim();
    // Keys read st_<key id>_<secret part>.
    const id = /^st_([0-9a-f]+)_/.exec(secret)?.[1];
    if (!id) throw new Error(`unexpected key from sealtrail keys create: ${secret.slice(0, 12)}…`);
    made[name] = { secret, id };
  }

  let child = null;
  let stderrTail = '';

  const server = {
    url: `http://127.0.0.1:${port}`,
    port,
    dataDir,
    keys: made,

    async start() {
      if (child) throw new Error('already running');
      // Right after a stop the port can take a moment to be free again.
      for (let attempt = 0; ; attempt++) {
        try {
          child = await startProcess();
          return;
        } catch (error) {
          child = null;
          if (attempt >= START_ATTEMPTS) throw error;
          await new Promise((resolve) => setTimeout(resolve, START_RETRY_MS));
        }
      }
    },

    async stop() {
      if (!child) return;
      const exiting = child;
      child = null;
      const exited = new Promise((resolve) => exiting.once('exit', resolve));
      exiting.kill('SIGTERM');
      const timer = setTimeout(() => exiting.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },

    /** Calls the API with a key; returns {status, body}. */
    async request(keyName, path, { method = 'GET', body } = {}) {
      const headers = { authorization: `Bearer ${made[keyName].secret}` };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const response = await fetch(`${server.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },

    /** Ingests events with a key; returns the receipts. */
    async ingest(keyName, events) {
      const { status, body } = await server.request(keyName, '/v1/events', { method: 'POST', body: { events } });
      if (status !== 200 && status !== 201) throw new Error(`ingest: ${status} ${JSON.stringify(body)}`);
      return body.events;
    },

    get stderr() {
      return stderrTail;
    },
  };

  function startProcess() {
    return new Promise((resolve, reject) => {
      const proc = spawn(SEALTRAIL_BIN, ['serve', '--config', configPath, '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`], {
        env: serverEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      running.add(proc);
      proc.once('exit', () => running.delete(proc));
      proc.stderr.on('data', (chunk) => {
        stderrTail = (stderrTail + chunk).slice(-4000);
      });
      const onExit = (code) => reject(new Error(`sealtrail serve exited with ${code} before listening: ${stderrTail}`));
      proc.once('exit', onExit);
      proc.once('error', reject);
      createInterface({ input: proc.stdout }).once('line', (line) => {
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

/**
 * Runs SQL on the embedded store's log directly, as someone with access to the disk
 * could (Node 20 has no SQLite module; Python's is everywhere).
 */
export async function editLogDatabase(dataDir, sql, params = []) {
  const script = [
    'import sqlite3, sys, json',
    'db = sqlite3.connect(sys.argv[1])',
    'cur = db.execute(sys.argv[2], json.loads(sys.argv[3]))',
    'db.commit()',
    'print(cur.rowcount)',
  ].join('\n');
  const { stdout } = await run('python3', ['-c', script, join(dataDir, 'log.sqlite'), sql, JSON.stringify(params)]);
  return Number(stdout.trim());
}
