// Cloudflare Workers (workerd, wrangler, miniflare): the bundler or the worker config provides
// the compiled module; code generation from bytes is not allowed there.

import wasmModule from './quorumlock_wasm_bg.wasm';
import { initSync } from './quorumlock_wasm.js';

initSync({ module: wasmModule });

export * from './index.js';
