import { describe, it, expect, afterEach } from 'vitest'
import { openSync, readFileSync } from 'node:fs'
import { close, fdSize, memfdCreate, mmap, unmap } from '../../src/native/index.js'
import { fdFlags, O_CLOEXEC, runNode, thrown, uniqueName } from './support.js'

const PAGE = 4096
const opened: number[] = []
const mapped: ArrayBuffer[] = []

function own(fd: number): number {
  opened.push(fd)
  return fd
}

function map(fd: number, length: number, offset: number, writable: boolean): ArrayBuffer {
  const buf = mmap(fd, length, offset, writable)
  mapped.push(buf)
  return buf
}

afterEach(() => {
  for (const buf of mapped.splice(0)) unmap(buf)
  for (const fd of opened.splice(0)) close(fd)
})

/** Mappings of this process whose file name contains `name`. */
function mappingsOf(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes(name)).length
}

describe('memfdCreate / fdSize', () => {
  it('creates a close-on-exec memfd of the given size', () => {
    const fd = own(memfdCreate('size-probe', 3 * PAGE + 5))
    expect(fdSize(fd)).toBe(3 * PAGE + 5)
    expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC)
    expect(fdSize(own(memfdCreate('empty', 0)))).toBe(0)
  })

  it('rejects bad names and sizes', () => {
    expect(thrown(() => memfdCreate('x'.repeat(250), 1))).toMatchObject({ code: 'ENAMETOOLONG' })
    expect(thrown(() => memfdCreate('a\0b', 1))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' })
    expect(thrown(() => memfdCreate('x', -1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => fdSize(-1))).toMatchObject({ code: 'EBADF', syscall: 'fstat' })
  })
})

describe('mmap', () => {
  it('bytes written through one mapping of a memfd are seen through another', () => {
    const fd = own(memfdCreate('shared', 2 * PAGE))
    const a = new Uint8Array(map(fd, 2 * PAGE, 0, true))
    const b = new Uint8Array(map(fd, 2 * PAGE, 0, false))
    expect(a.length).toBe(2 * PAGE)
    a[0] = 0x5a
    a[2 * PAGE - 1] = 0xa5
    expect(b[0]).toBe(0x5a)
    expect(b[2 * PAGE - 1]).toBe(0xa5)
  })

  it('maps at a page-aligned offset', () => {
    const fd = own(memfdCreate('offset', 3 * PAGE))
    const whole = new Uint8Array(map(fd, 3 * PAGE, 0, true))
    whole[PAGE + 7] = 42
    const second = new Uint8Array(map(fd, PAGE, PAGE, false))
    expect(second[7]).toBe(42)
  })

  // The project's memory-ordering decision (see src/native/index.ts): ring
  // indices use Atomics on typed arrays over these non-shared external buffers.
  it('Atomics.load/store work on Uint16Array/Uint32Array over mappings and cross mappings', () => {
    const fd = own(memfdCreate('atomics', PAGE))
    const writer = map(fd, PAGE, 0, true)
    const reader = map(fd, PAGE, 0, false)
    expect(writer instanceof SharedArrayBuffer).toBe(false)

    const idx16 = new Uint16Array(writer, 2, 1) // like avail.idx at byte 2
    const seen16 = new Uint16Array(reader, 2, 1)
    expect(Atomics.store(idx16, 0, 0xfffe)).toBe(0xfffe)
    expect(Atomics.load(seen16, 0)).toBe(0xfffe)
    expect(Atomics.load(idx16, 0)).toBe(0xfffe)

    const elems = new Uint32Array(writer, 8, 4) // like used.ring[i] {id, len}
    const seen32 = new Uint32Array(reader, 8, 4)
    Atomics.store(elems, 3, 0xdeadbeef)
    expect(Atomics.load(seen32, 3)).toBe(0xdeadbeef)
    expect(new DataView(reader).getUint32(8 + 12, true)).toBe(0xdeadbeef)
  })

  it('rejects bad lengths, offsets and types', () => {
    const fd = own(memfdCreate('bad-args', PAGE))
    expect(thrown(() => mmap(fd, 0, 0, true))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => mmap(fd, 2 ** 32 + 1, 0, true))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => mmap(fd, -PAGE, 0, true))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => mmap(fd, PAGE, 100, true))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => mmap(fd, PAGE, -PAGE, true))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => mmap(fd, PAGE, 2 ** 60, true))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => mmap(fd, 1.5, 0, true))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => mmap(fd, PAGE, 0, 1 as unknown as boolean))).toMatchObject({
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
    })
  })

  it('mmap of a bad fd throws EBADF', () => {
    expect(thrown(() => mmap(-1, PAGE, 0, true))).toMatchObject({ code: 'EBADF', syscall: 'mmap' })
    const fd = memfdCreate('closed', PAGE)
    close(fd)
    expect(thrown(() => mmap(fd, PAGE, 0, false))).toMatchObject({ code: 'EBADF', syscall: 'mmap' })
  })

  it('a writable mapping of a read-only fd is refused by the kernel', () => {
    const fd = own(memfdCreate('ro', PAGE))
    const ro = own(openSync(`/proc/self/fd/${fd}`, 'r')) // a second, read-only open of the memfd
    expect(thrown(() => mmap(ro, PAGE, 0, true))).toMatchObject({ code: 'EACCES', syscall: 'mmap' })
    expect(new Uint8Array(map(ro, PAGE, 0, false)).length).toBe(PAGE)
  })
})

describe('unmap', () => {
  it('detaches the buffer: byteLength 0, views of length 0, reads undefined, writes ignored', () => {
    const name = uniqueName('unmap')
    const fd = own(memfdCreate(name, PAGE))
    const buf = mmap(fd, PAGE, 0, true)
    const view = new Uint8Array(buf)
    const ring = new Uint32Array(buf)
    const dv = new DataView(buf)
    view[0] = 1
    expect(mappingsOf(name)).toBe(1)

    unmap(buf)
    expect(mappingsOf(name)).toBe(0)
    expect(buf.byteLength).toBe(0)
    expect(view.length).toBe(0)
    expect(view[0]).toBeUndefined()
    view[0] = 2
    expect(view[0]).toBeUndefined()
    // Atomics and DataView accesses on a detached buffer throw instead.
    expect(() => Atomics.load(ring, 0)).toThrow(TypeError)
    expect(() => Atomics.store(ring, 0, 1)).toThrow(TypeError)
    expect(() => dv.getUint8(0)).toThrow(TypeError)

    unmap(buf) // idempotent
    expect(buf.byteLength).toBe(0)
  })

  it('refuses a buffer that mmap() did not create', () => {
    expect(thrown(() => unmap(new ArrayBuffer(8)))).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
    expect(thrown(() => unmap(new Uint8Array(8) as unknown as ArrayBuffer))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
    expect(thrown(() => unmap(new SharedArrayBuffer(8) as unknown as ArrayBuffer))).toMatchObject({
      code: 'ERR_INVALID_ARG_TYPE',
    })
  })

  it('a mapping collected without unmap() is unmapped by its finalizer', () => {
    const r = runNode(
      `
      const a = require(process.env.VHOST_NATIVE)
      const fs = require('fs')
      const maps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.includes('memfd:gc-probe')).length
      const fd = a.memfdCreate('gc-probe', 4096)
      ;(() => { new Uint8Array(a.mmap(fd, 4096, 0, true))[0] = 1 })()
      ;(() => { a.unmap(a.mmap(fd, 4096, 0, true)) })()
      const before = maps()
      global.gc()
      setImmediate(() => { global.gc(); setImmediate(() => console.log(JSON.stringify({ before, after: maps() }))) })
      `,
      ['--expose-gc'],
    )
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ before: 1, after: 0 })
  })
})
