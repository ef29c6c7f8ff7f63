// The TypeScript declarations of the built package accept the documented usage and reject
// misuse (test/types/usage.ts, compiled with tsc in strict mode).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';

const run = promisify(execFile);
const tsc = fileURLToPath(new URL('../node_modules/.bin/tsc', import.meta.url));
const project = fileURLToPath(new URL('./types/tsconfig.json', import.meta.url));

test('index.d.ts type-checks the README usage', async () => {
  const outcome = await run(tsc, ['-p', project], { timeout: 60_000 }).catch((error) => error);
  assert.equal(outcome.code ?? 0, 0, `${outcome.stdout}${outcome.stderr}`);
});
