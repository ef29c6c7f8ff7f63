// Node, Deno and Bun: the module is read from the package folder, synchronously, at import.

import { readFileSync } from 'node:fs';
import { initSync } from './quorumlock_wasm.js';

initSync({ module: readFileSync(new URL('./quorumlock_wasm_bg.wasm', import.meta.url)) });

export * from './index.js';
