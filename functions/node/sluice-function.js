// Helper for Sluice functions in Node.js (runtime: exec). No dependencies.
//
//   const { handler, PermanentError, result } = require('./sluice-function');
//   handler(async (req) => ({ n: req.payload.text.length })); // the new payload (undefined keeps it)
//
// Sluice starts the script as a worker and writes one JSON request per line
// on its stdin ({id, flow, run, attempt, deadline, event, payload, meta,
// object, body_path}); each is answered with one JSON line on stdout, one at
// a time. Log with console.error: stdout carries the answers. Throw
// PermanentError for input no retry can fix; any other error is transient.
'use strict';
const readline = require('node:readline');

class PermanentError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PermanentError';
  }
}

const RESULT = Symbol('sluice.result');

// result returns a payload with metadata (an object of strings).
function result(payload, meta) {
  return { [RESULT]: true, payload, meta };
}

// answer runs fn on one request and returns the response object.
async function answer(fn, req) {
  const out = { id: req.id };
  if (req.warmup) return out;
  let res;
  try {
    res = await fn(req);
  } catch (e) {
    if (!(e instanceof PermanentError)) console.error(e && e.stack ? e.stack : e);
    out.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    if (e instanceof PermanentError) out.permanent = true;
    return out;
  }
  if (res && res[RESULT]) {
    if (res.payload !== undefined) out.payload = res.payload;
    if (res.meta) out.meta = res.meta;
  } else if (res !== undefined) {
    out.payload = res;
  }
  return out;
}

// handler serves fn on stdin/stdout until stdin closes.
function handler(fn, input = process.stdin, output = process.stdout) {
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    if (!line.trim()) return;
    queue = queue.then(async () => {
      let out;
      try {
        out = await answer(fn, JSON.parse(line));
      } catch (e) {
        out = { error: `bad request: ${e.message}`, permanent: true };
      }
      output.write(JSON.stringify(out) + '\n');
    });
  });
  return fn;
}

module.exports = { handler, answer, result, PermanentError };
