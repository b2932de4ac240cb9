/**
 * Byte helpers for tests that compare disk contents: equality that reports the first differing
 * offset (vitest's element-wise diff of megabytes takes seconds), and reading a file range.
 */
import fs from 'node:fs'
import { expect } from 'vitest'

/** Fails the test at the first differing byte, naming its offset. */
export function expectSame(actual: Uint8Array, expected: Uint8Array): void {
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength)
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)
  if (a.equals(b)) return
  let i = 0
  while (i < a.length && a[i] === b[i]) i++
  expect.fail(`bytes differ at offset ${i} (lengths ${a.length}, ${b.length})`)
}

/** `len` bytes of `file` at `offset`. */
export function readFileAt(file: string, offset: number, len: number): Buffer {
  const fd = fs.openSync(file, 'r')
  try {
    const b = Buffer.alloc(len)
    fs.readSync(fd, b, 0, len, offset)
    return b
  } finally {
    fs.closeSync(fd)
  }
}
