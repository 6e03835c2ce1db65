// A test function in Node: the payload's "do" says how to behave.
const { handler, PermanentError, result } = require('sluice-function');

handler(async (req) => {
  const p = req.payload || {};
  switch (p.do || 'ok') {
    case 'ok':
      return result({ pid: process.pid, got: p }, { handled_by: 'node' });
    case 'crash':
      console.error('about to crash');
      process.exit(3);
    case 'hang':
      return new Promise(() => {});
    case 'permanent':
      throw new PermanentError('bad order');
    case 'notjson':
      process.stdout.write('oops\n');
      return undefined;
    case 'hog': {
      const keep = [];
      for (;;) keep.push(Buffer.alloc(16 << 20, 1));
    }
    default:
      throw new Error('unknown do');
  }
});
