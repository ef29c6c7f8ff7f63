// Browsers and bundlers: the module is fetched next to this file.

import init from './quorumlock_wasm.js';

await init({ module_or_path: new URL('./quorumlock_wasm_bg.wasm', import.meta.url) });

export * from './index.js';
