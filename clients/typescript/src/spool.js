// The disk spool: where batches wait while Sealtrail cannot be reached, and survive a
// restart of the process.
//
// Events come and go as JSON text, one event per line, exactly as the client serialized
// them when they were recorded. Each file is NDJSON of fully stamped events (ids, source,
// source_seq), so a replay sends what would have been sent, and the server's idempotency
// on `id` makes it exactly-once, even when a file is replayed twice (a crash between the
// server's answer and the delete). A file appears only complete: it is written under a
// temporary name, fsync'd, renamed, and the directory fsync'd. It is deleted only after
// the server acknowledged every event in it; events the server refuses for good are
// moved to `refused/` for an operator to look at.

import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const SPOOL_SUFFIX = '.ndjson';
const TEMP_SUFFIX = '.tmp';

/**
 * A temporary file older than this was left by a process that died while writing it (a
 * live writer renames within milliseconds); its complete lines are recovered.
 */
const ABANDONED_TEMP_AGE_MS = 60_000;

/** @typedef {{name: string, path: string, bytes: number}} SpoolFile */

export class Spool {
  #dir;
  #refusedDir;
  #maxBytes;
  #prefix;
  #counter = 0;
  /** Complete spool files, oldest first. @type {SpoolFile[]} */
  #files = [];
  /** Bytes of the complete files plus those being written. */
  #bytes = 0;

  /**
   * Opens (creating it if needed) a spool directory and takes stock of the files an
   * earlier process left there. Synchronous on purpose: it runs once, in the client's
   * constructor, and the client must know about old files before it sends anything new.
   * @param {{dir: string, maxBytes: number, instanceId: string}} options
   */
  constructor({ dir, maxBytes, instanceId }) {
    this.#dir = dir;
    this.#refusedDir = join(dir, 'refused');
    this.#maxBytes = maxBytes;
    this.#prefix = instanceId;
    mkdirSync(this.#refusedDir, { recursive: true });
    this.#recoverAbandonedTemps();
    this.rescan();
  }

  /** The directory. */
  get dir() {
    return this.#dir;
  }

  /** How many complete files wait to be delivered. */
  get fileCount() {
    return this.#files.length;
  }

  /** Bytes on disk (and being written) in spool files. */
  get bytes() {
    return this.#bytes;
  }

  /** The oldest file, or undefined. */
  oldest() {
    return this.#files[0];
  }

  /**
   * Reads the directory again, to pick up files other processes left (a restarted sibling
   * worker sharing the directory, say). Keeps the bytes of writes in flight.
   */
  rescan() {
    const known = new Map(this.#files.map((file) => [file.name, file]));
    const inFlightBytes = this.#bytes - this.#files.reduce((sum, file) => sum + file.bytes, 0);
    const files = [];
    for (const name of readdirSync(this.#dir)) {
      if (!name.endsWith(SPOOL_SUFFIX) || name.startsWith('.')) continue;
      const existing = known.get(name);
      if (existing) {
        files.push(existing);
        continue;
      }
      try {
        const { size } = statSync(join(this.#dir, name));
        files.push({ name, path: join(this.#dir, name), bytes: size });
      } catch {
        // Deleted meanwhile by another process that delivered it.
      }
    }
    files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.#files = files;
    this.#bytes = inFlightBytes + files.reduce((sum, file) => sum + file.bytes, 0);
  }

  /**
   * Writes events as a new spool file. Resolves false, writing nothing, when the file would
   * take the spool past its byte bound; rejects on an I/O error.
   * @param {string[]} events each one event's JSON
   * @returns {Promise<boolean>}
   */
  async write(events) {
    const text = toNdjson(events);
    const bytes = Buffer.byteLength(text);
    if (this.#bytes + bytes > this.#maxBytes) return false;
    // Reserve the bytes before the first await, so concurrent writes cannot overshoot.
    this.#bytes += bytes;
    const name = this.#nextName();
    const path = join(this.#dir, name);
    const temp = join(this.#dir, `.${name}${TEMP_SUFFIX}`);
    try {
      await writeDurably(temp, text);
      await rename(temp, path);
      await syncDirectory(this.#dir);
    } catch (error) {
      this.#bytes -= bytes;
      await unlink(temp).catch(() => {});
      throw error;
    }
    this.#insert({ name, path, bytes });
    return true;
  }

  /**
   * Reads a spool file's events (each line's JSON text). Lines that cannot be an event
   * (which only a disk fault could produce) come back separately, so they can be set aside
   * instead of making the server refuse the good ones with them.
   * Resolves undefined when the file is gone (another process delivered it).
   * @param {SpoolFile} file
   * @returns {Promise<{events: string[], unreadable: string[]} | undefined>}
   */
  async read(file) {
    let text;
    try {
      text = await readFile(file.path, 'utf8');
    } catch (error) {
      if (error.code === 'ENOENT') {
        this.#forget(file);
        return undefined;
      }
      throw error;
    }
    return parseNdjson(text);
  }

  /**
   * Deletes a file whose events are all settled.
   * @param {SpoolFile} file
   */
  async remove(file) {
    try {
      await unlink(file.path);
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
    this.#forget(file);
  }

  /**
   * Keeps events the server refused for good in `refused/`, with the server's answer next
   * to them, for an operator to inspect (they do not count against the spool's bound).
   * @param {string[]} events each one event's JSON (or an unreadable line)
   * @param {object} why the refusal: status, code, reason, errors
   */
  async keepRefused(events, why) {
    const base = this.#nextName().slice(0, -SPOOL_SUFFIX.length);
    await writeFile(join(this.#refusedDir, `${base}${SPOOL_SUFFIX}`), toNdjson(events));
    await writeFile(join(this.#refusedDir, `${base}.error.json`), `${JSON.stringify(why, null, 2)}\n`);
  }

  // Names sort in the order the files were written: zero-padded milliseconds, then this
  // process's instance id and a counter for files in the same millisecond.
  #nextName() {
    const millis = String(Date.now()).padStart(15, '0');
    const counter = String(++this.#counter).padStart(9, '0');
    return `${millis}-${this.#prefix}-${counter}${SPOOL_SUFFIX}`;
  }

  #insert(file) {
    // Usually the newest; concurrent writes can finish out of order, so walk back.
    let index = this.#files.length;
    while (index > 0 && this.#files[index - 1].name > file.name) index--;
    this.#files.splice(index, 0, file);
  }

  #forget(file) {
    const index = this.#files.indexOf(file);
    if (index === -1) return;
    this.#files.splice(index, 1);
    this.#bytes -= file.bytes;
  }

  // A process that died between writing a temporary file and renaming it lost those
  // events from memory, but its complete lines are still here: they become a normal spool
  // file (a truncated last line is the only thing lost).
  #recoverAbandonedTemps() {
    const now = Date.now();
    for (const name of readdirSync(this.#dir)) {
      if (!name.startsWith('.') || !name.endsWith(TEMP_SUFFIX)) continue;
      const temp = join(this.#dir, name);
      try {
        if (now - statSync(temp).mtimeMs < ABANDONED_TEMP_AGE_MS) continue;
        const { events } = parseNdjson(readFileSync(temp, 'utf8'), { strict: true });
        if (events.length > 0) {
          const recovered = join(this.#dir, name.slice(1, -TEMP_SUFFIX.length));
          writeDurablySync(`${recovered}.recovering`, toNdjson(events));
          renameSync(`${recovered}.recovering`, recovered);
        }
        unlinkSync(temp);
      } catch {
        // Another process is recovering it at the same time; leave it to that one.
      }
    }
  }
}

function toNdjson(lines) {
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

// Every line of a spool file was written whole by this client (files appear only by
// rename), so a full JSON parse of each would only re-check what JSON.stringify produced;
// the shape check catches a corrupted line, and the server checks the rest. An abandoned
// temporary file can end in a torn line, which only a real parse (`strict`) tells apart.
function parseNdjson(text, { strict = false } = {}) {
  const events = [];
  const unreadable = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('{') && line.endsWith('}') && (!strict || isJson(line))) events.push(line);
    else unreadable.push(line);
  }
  return { events, unreadable };
}

function isJson(text) {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function writeDurablySync(path, text) {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function writeDurably(path, text) {
  const handle = await open(path, 'wx');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// Makes the rename durable. Not every platform can open a directory (Windows cannot);
// there the rename is as durable as the file system makes it.
async function syncDirectory(dir) {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch {
    // See above.
  } finally {
    await handle?.close();
  }
}
