/**
 * Support for the native-layer tests: a runner for short scripts in a fresh
 * Node process (for behaviour a test process must not risk or cannot observe:
 * GC finalizers, uncaught exceptions, loop liveness, worker exit), fd
 * inspection through /proc, and a helper to capture a thrown error.
 * Owns no assertions.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { NativeError } from '../../src/native/index.js'

/** Run fn and return what it threw; throws if fn returned normally. */
export function thrown(fn: () => unknown): NativeError {
  try {
    fn()
  } catch (e) {
    return e as NativeError
  }
  throw new Error('expected a throw')
}

/** Absolute path of the built addon. */
export const ADDON_PATH = fileURLToPath(new URL('../../build/Release/vhost_native.node', import.meta.url))

/** Run `script` with `node [flags] -e script` (addon path in env VHOST_NATIVE); kills it after `timeoutMs`. */
export function runNode(script: string, flags: string[] = [], timeoutMs = 10_000): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [...flags, '-e', script], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, VHOST_NATIVE: ADDON_PATH },
  })
}

/** The open-file flags of `fd` in this process, from /proc/self/fdinfo. */
export function fdFlags(fd: number): number {
  const line = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').split('\n').find((l) => l.startsWith('flags:'))
  if (line === undefined) throw new Error(`no flags for fd ${fd}`)
  return parseInt(line.slice('flags:'.length).trim(), 8)
}

/** Linux open-flag bits as /proc/self/fdinfo prints them. */
export const O_NONBLOCK = 0o4000
export const O_CLOEXEC = 0o2000000

/** How many fds of this process point at a target containing `marker` (e.g. a memfd name). */
export function countFdsTo(marker: string): number {
  let n = 0
  for (const entry of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${entry}`).includes(marker)) n++
    } catch {
      // The fd readdir itself used is gone by now.
    }
  }
  return n
}

/** A marker unique to this process and call, for memfd names and socket paths. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`
}
