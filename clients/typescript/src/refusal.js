// What to do with a batch the server refused.
//
// Ingest is all-or-nothing, so one bad event refuses the whole request and nothing of it is
// stored. Throwing the other 99 good events away with it would turn one bug into a hole in
// the audit trail, so when the answer says which events are at fault, only those are
// refused and the rest are sent again; a batch too large in bytes (413) is halved.

/**
 * @param {object[]} events the batch as sent
 * @param {import('./errors.js').SealtrailRefusedError} error
 * @returns {{refused: object[], resend: object[][]}} the events refused for good, and the
 *   batches to send again (in order)
 */
export function splitRefusal(events, error) {
  if (error.status === 413) {
    if (events.length === 1) return { refused: events, resend: [] };
    const middle = Math.ceil(events.length / 2);
    return { refused: [], resend: [events.slice(0, middle), events.slice(middle)] };
  }
  const bad = badIndexes(error, events.length);
  if (bad.size === 0 || bad.size === events.length) return { refused: events, resend: [] };
  const refused = [];
  const rest = [];
  events.forEach((event, index) => (bad.has(index) ? refused : rest).push(event));
  return { refused, resend: [rest] };
}

/** The indexes the answer names: each `errors[].index`, else the `events[N]` of `field`. */
function badIndexes(error, count) {
  const indexes = new Set();
  const add = (index) => {
    if (Number.isInteger(index) && index >= 0 && index < count) indexes.add(index);
  };
  for (const entry of error.errors ?? []) add(entry?.index);
  if (indexes.size === 0 && typeof error.field === 'string') {
    const match = /^events\[(\d+)\]/.exec(error.field);
    if (match) add(Number(match[1]));
  }
  return indexes;
}
