/**
 * Loads the C addon built by node-gyp (binding.gyp → build/Release/vhost_native.node).
 * Owns nothing but the lookup; the typed face of each syscall lives in ./index.ts.
 */
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)

/** The raw addon exports; only src/native/index.ts should touch this. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const addon: any = require(path.join(here, '..', '..', 'build', 'Release', 'vhost_native.node'))
