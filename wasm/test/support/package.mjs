// The BUILT package (wasm/pkg, or $QUORUMLOCK_PKG_DIR), as users import it.

import { pathToFileURL } from 'node:url';

export const packageDir = process.env.QUORUMLOCK_PKG_DIR
  ? pathToFileURL(`${process.env.QUORUMLOCK_PKG_DIR.replace(/\/$/, '')}/`)
  : new URL('../../pkg/', import.meta.url);

export const quorumlock = await import(new URL('node.mjs', packageDir));
