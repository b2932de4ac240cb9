/**
 * The io_uring ring and the file syscalls of the native layer against real temp files: readv,
 * writev, fsync and fallocate through the ring, completions via the eventfd and a Poller, a full
 * submission queue or iovec arena, errors as negative results; OFD locks, block-device and
 * direct-I/O queries, the thread-pool fallocate / BLKDISCARD, and the synchronous preadv /
 * pwritev / fdatasync / fallocate.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, IoUring, Poller, RWF_DSYNC, blkDiscardAsync, blockDeviceInfo,
  close, directIoAlignment, eventfdRead, fallocate, fallocateAsync, fdatasync, ofdLock, preadv, pwritev, socketPair,
} from '../../src/native/index.js'
import { thrown } from './support.js'

const EBADF = 9
const ENODEV = 19
const ENOTTY = 25

let dir: string
const rings: IoUring[] = []
const pollers: Poller[] = []
const fds: number[] = []

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-uring-'))
})

afterEach(() => {
  for (const p of pollers.splice(0)) p.close()
  for (const r of rings.splice(0)) r.close()
  for (const fd of fds.splice(0)) fs.closeSync(fd)
  fs.rmSync(dir, { recursive: true, force: true })
})

function ring(entries = 8, cqEntries?: number, iovecs?: number): IoUring {
  const r = new IoUring(entries, cqEntries, iovecs)
  rings.push(r)
  return r
}

function tempFile(size: number, flags = 'w+'): number {
  const fd = fs.openSync(path.join(dir, `f${fds.length}`), flags)
  fs.ftruncateSync(fd, size)
  fds.push(fd)
  return fd
}

/** Reaps until `n` completions arrived (spinning on the CQ; the kernel finishes them quickly). */
async function reapAll(r: IoUring, n: number): Promise<Map<number, number>> {
  const out = new Int32Array(16)
  const got = new Map<number, number>()
  const deadline = Date.now() + 5000
  while (got.size < n) {
    const k = r.reap(out)
    for (let i = 0; i < k; i++) got.set(out[2 * i], out[2 * i + 1])
    if (k === 0) {
      if (Date.now() > deadline) throw new Error(`only ${got.size} of ${n} completions`)
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
  }
  return got
}

function segs(...sizes: number[]) {
  const buffers = sizes.map((n) => new Uint8Array(n + 16))
  return {
    buffers,
    offsets: Uint32Array.from(sizes.map(() => 16)),
    lengths: Uint32Array.from(sizes),
  }
}

describe('IoUring', () => {
  it('writev then readv move scattered segments to and from a file, skipping a prefix', async () => {
    const r = ring()
    const fd = tempFile(1 << 20)
    const w = segs(512, 1536, 2048)
    w.buffers.forEach((b, i) => b.fill(i + 1))
    expect(r.prepWritev(fd, w.buffers, w.offsets, w.lengths, 3, 0, 8192, 1)).toBe(true)
    expect(r.pending).toBe(1)
    expect(r.submit()).toBe(1)
    expect((await reapAll(r, 1)).get(1)).toBe(4096)
    const onDisk = Buffer.alloc(4096)
    fs.readSync(fd, onDisk, 0, 4096, 8192)
    expect(onDisk.subarray(0, 512).every((b) => b === 1)).toBe(true)
    expect(onDisk.subarray(512, 2048).every((b) => b === 2)).toBe(true)
    expect(onDisk.subarray(2048).every((b) => b === 3)).toBe(true)

    const rd = segs(1024, 1024, 2048)
    // Skip 1536 bytes: the first segment entirely, half of the second.
    expect(r.prepReadv(fd, rd.buffers, rd.offsets, rd.lengths, 3, 1536, 8192, 2)).toBe(true)
    r.submit()
    expect((await reapAll(r, 1)).get(2)).toBe(2560)
    expect(rd.buffers[0].every((b) => b === 0)).toBe(true)
    expect(Buffer.from(rd.buffers[1].subarray(16 + 512, 16 + 1024))).toEqual(onDisk.subarray(1536, 2048))
    expect(Buffer.from(rd.buffers[2].subarray(16))).toEqual(onDisk.subarray(2048))
    expect(rd.buffers[1].subarray(0, 16 + 512).every((b) => b === 0)).toBe(true)
  })

  it('fsync, fdatasync, a RWF_DSYNC write and fallocate complete with 0; a punched hole frees blocks', async () => {
    const r = ring()
    const fd = tempFile(0)
    const data = new Uint8Array(1 << 20).fill(7)
    fs.writeSync(fd, data, 0, data.length, 0)
    fs.fsyncSync(fd)
    const before = fs.fstatSync(fd).blocks
    const w = { buffers: [data], offsets: Uint32Array.of(0), lengths: Uint32Array.of(4096) }
    expect(r.prepWritev(fd, w.buffers, w.offsets, w.lengths, 1, 0, 0, 10, RWF_DSYNC)).toBe(true)
    expect(r.prepFsync(fd, false, 11)).toBe(true)
    expect(r.prepFsync(fd, true, 12)).toBe(true)
    expect(r.prepFallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 512 * 1024, 13)).toBe(true)
    expect(r.submit()).toBe(4)
    const got = await reapAll(r, 4)
    expect([...got.entries()].sort()).toEqual([[10, 4096], [11, 0], [12, 0], [13, 0]])
    expect(fs.fstatSync(fd).blocks).toBeLessThan(before)
    expect(fs.fstatSync(fd).size).toBe(1 << 20)
    const back = Buffer.alloc(512 * 1024)
    fs.readSync(fd, back, 0, back.length, 65536)
    expect(back.every((b) => b === 0)).toBe(true)
  })

  it('signals completions on its eventfd, watched by a Poller', async () => {
    const r = ring()
    const fd = tempFile(65536)
    const out = new Int32Array(8)
    const seen: number[] = []
    let wake: () => void = () => {}
    const done = new Promise<void>((resolve) => (wake = resolve))
    const p = new Poller(r.eventFd, () => {
      expect(eventfdRead(r.eventFd)).toBeGreaterThan(0)
      let n
      while ((n = r.reap(out)) > 0) for (let i = 0; i < n; i++) seen.push(out[2 * i])
      if (seen.length === 3) wake()
    })
    pollers.push(p)
    p.start()
    for (let i = 0; i < 3; i++) expect(r.prepFsync(fd, true, 100 + i)).toBe(true)
    r.submit()
    await done
    expect(seen.sort()).toEqual([100, 101, 102])
  })

  it('a full submission queue refuses more entries until submit()', async () => {
    const r = ring(4, 16)
    expect(r.entries).toBe(4)
    expect(r.cqEntries).toBe(16)
    const fd = tempFile(4096)
    for (let i = 0; i < 4; i++) expect(r.prepFsync(fd, true, i)).toBe(true)
    expect(r.prepFsync(fd, true, 4)).toBe(false)
    expect(r.prepFallocate(fd, 0, 0, 4096, 4)).toBe(false)
    const w = segs(512)
    expect(r.prepWritev(fd, w.buffers, w.offsets, w.lengths, 1, 0, 0, 4)).toBe(false)
    expect(r.pending).toBe(4)
    expect(r.submit()).toBe(4)
    expect(r.pending).toBe(0)
    expect(r.prepFsync(fd, true, 4)).toBe(true)
    r.submit()
    expect((await reapAll(r, 5)).size).toBe(5)
  })

  it('a full iovec arena refuses a vector until submit() frees it', async () => {
    const r = ring(8, 16, 3)
    const fd = tempFile(65536)
    const a = segs(512, 512)
    expect(r.prepWritev(fd, a.buffers, a.offsets, a.lengths, 2, 0, 0, 1)).toBe(true)
    expect(r.prepWritev(fd, a.buffers, a.offsets, a.lengths, 2, 0, 4096, 2)).toBe(false)
    expect(r.pending).toBe(1)
    r.submit()
    expect(r.prepWritev(fd, a.buffers, a.offsets, a.lengths, 2, 0, 4096, 2)).toBe(true)
    r.submit()
    expect([...(await reapAll(r, 2)).values()]).toEqual([1024, 1024])
    // A vector larger than the whole arena can never fit: that is a caller bug.
    const big = segs(512, 512, 512, 512)
    expect(thrown(() => r.prepReadv(fd, big.buffers, big.offsets, big.lengths, 4, 0, 0, 3)).code).toBe('ERR_OUT_OF_RANGE')
  })

  it('reports failures as negative errno results', async () => {
    const r = ring()
    const ro = fs.openSync(path.join(dir, 'ro'), 'w+')
    fs.closeSync(ro)
    const fd = fs.openSync(path.join(dir, 'ro'), 'r')
    fds.push(fd)
    const [s0, s1] = socketPair()
    const w = segs(512)
    expect(r.prepWritev(fd, w.buffers, w.offsets, w.lengths, 1, 0, 0, 1)).toBe(true)
    expect(r.prepFallocate(s0, 0, 0, 4096, 2)).toBe(true)
    expect(r.prepFsync(123456, true, 3)).toBe(true)
    r.submit()
    const got = await reapAll(r, 3)
    expect(got.get(1)).toBe(-EBADF)
    expect(got.get(2)).toBe(-ENODEV)
    expect(got.get(3)).toBe(-EBADF)
    close(s0)
    close(s1)
  })

  it('validates its arguments and refuses calls after close()', () => {
    const r = ring()
    const fd = tempFile(4096)
    const w = segs(512)
    expect(thrown(() => r.prepReadv(fd, w.buffers, w.offsets, Uint32Array.of(600), 1, 0, 0, 1)).code).toBe('ERR_OUT_OF_RANGE')
    expect(thrown(() => r.prepReadv(fd, w.buffers, w.offsets, w.lengths, 1, 512, 0, 1)).code).toBe('ERR_OUT_OF_RANGE')
    expect(thrown(() => r.prepReadv(fd, w.buffers, w.offsets, w.lengths, 2, 0, 0, 1)).code).toBe('ERR_OUT_OF_RANGE')
    expect(thrown(() => r.prepReadv(fd, [new Uint16Array(8) as unknown as Uint8Array], w.offsets, Uint32Array.of(4), 1, 0, 0, 1)).code)
      .toBe('ERR_INVALID_ARG_TYPE')
    expect(thrown(() => r.prepFsync(fd, true, -1)).code).toBe('ERR_OUT_OF_RANGE')
    expect(thrown(() => r.reap(new Int32Array(1))).code).toBe('ERR_INVALID_ARG_TYPE')
    expect(thrown(() => new IoUring(0)).code).toBe('ERR_OUT_OF_RANGE')
    expect(r.pending).toBe(0)
    r.close()
    r.close()
    expect(thrown(() => r.prepFsync(fd, true, 1)).code).toBe('EBADF')
    expect(thrown(() => r.submit()).code).toBe('EBADF')
  })
})

describe('file syscalls', () => {
  it('OFD locks: one writer excludes everyone, readers share', () => {
    const file = path.join(dir, 'img')
    fs.writeFileSync(file, '')
    const open = () => {
      const fd = fs.openSync(file, 'r+')
      fds.push(fd)
      return fd
    }
    const a = open()
    const b = open()
    expect(ofdLock(a, true)).toBe(true)
    expect(ofdLock(b, true)).toBe(false)
    expect(ofdLock(b, false)).toBe(false)
    fs.closeSync(fds.splice(fds.indexOf(a), 1)[0])
    expect(ofdLock(b, false)).toBe(true)
    const c = open()
    expect(ofdLock(c, false)).toBe(true)
    expect(ofdLock(open(), true)).toBe(false)
  })

  it('block-device and direct-I/O queries', () => {
    const fd = tempFile(4096)
    expect(thrown(() => blockDeviceInfo(fd)).code).toBe('ENOTTY')
    const align = directIoAlignment(fd)
    if (align !== null) {
      expect(align.offset).toBeGreaterThan(0)
      expect(align.memory).toBeGreaterThan(0)
    }
  })

  it('fallocate and BLKDISCARD on the thread pool report 0 or a negative errno', async () => {
    const fd = tempFile(0)
    fs.writeSync(fd, new Uint8Array(1 << 20).fill(1), 0, 1 << 20, 0)
    const ctx = { name: 'ctx' }
    const res = await new Promise<[unknown, number]>((resolve) =>
      fallocateAsync(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1 << 20, ctx, (c, n) => resolve([c, n])))
    expect(res).toEqual([ctx, 0])
    expect(fs.fstatSync(fd).blocks).toBe(0)
    const bad = await new Promise<number>((resolve) => fallocateAsync(fd, 0x4000, 0, 4096, null, (_c, n) => resolve(n)))
    expect(bad).toBeLessThan(0)
    const notBlk = await new Promise<number>((resolve) => blkDiscardAsync(fd, 0, 4096, null, (_c, n) => resolve(n)))
    expect(notBlk).toBe(-ENOTTY)
  })
})

describe('synchronous file calls', () => {
  it('pwritev and preadv move scattered segments, skipping a prefix, and report byte counts', () => {
    const fd = tempFile(8192)
    const a = new Uint8Array(1000).fill(0xa1)
    const b = new Uint8Array(3000).fill(0xb2)
    // Segment 0 is bytes [100, 612) of a, segment 1 bytes [0, 3000) of b; skip 12 of them.
    expect(pwritev(fd, [a, b], Uint32Array.of(100, 0), Uint32Array.of(512, 3000), 2, 12, 4096, RWF_DSYNC)).toBe(3500)
    const back = Buffer.alloc(3500)
    fs.readSync(fd, back, 0, 3500, 4096 + 12)
    expect(back.subarray(0, 500).every((x) => x === 0xa1)).toBe(true)
    expect(back.subarray(500).every((x) => x === 0xb2)).toBe(true)
    const into = new Uint8Array(4096)
    expect(preadv(fd, [into], Uint32Array.of(0), Uint32Array.of(4096), 1, 0, 4096 + 12)).toBe(4096 - 12)
    expect(into.subarray(0, 500).every((x) => x === 0xa1)).toBe(true)
    expect(preadv(fd, [into], Uint32Array.of(0), Uint32Array.of(4096), 1, 0, 8192)).toBe(0)
  })

  it('report errors as negative errnos, and refuse segments outside their buffers', () => {
    const buf = new Uint8Array(512)
    expect(preadv(-1, [buf], Uint32Array.of(0), Uint32Array.of(512), 1, 0, 0)).toBe(-EBADF)
    expect(pwritev(-1, [buf], Uint32Array.of(0), Uint32Array.of(512), 1, 0, 0)).toBe(-EBADF)
    expect(fdatasync(-1)).toBe(-EBADF)
    expect(thrown(() => preadv(tempFile(4096), [buf], Uint32Array.of(256), Uint32Array.of(512), 1, 0, 0)).name).toBe('RangeError')
  })

  it('fdatasync and fallocate report 0', () => {
    const fd = tempFile(0)
    fs.writeSync(fd, new Uint8Array(1 << 20).fill(1), 0, 1 << 20, 0)
    expect(fdatasync(fd)).toBe(0)
    expect(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1 << 20)).toBe(0)
    expect(fs.fstatSync(fd).blocks).toBe(0)
    expect(fallocate(fd, 0x4000, 0, 4096)).toBeLessThan(0)
  })
})
