/**
 * The file disk in-process, behind the real virtio-blk device (BlkRig), on real files, for both
 * I/O engines (and which one an image gets by default): scattered reads and writes land at the right file offsets, flush, discard and
 * write-zeroes (also where the filesystem refuses ZERO_RANGE: tmpfs), the guest's write-cache
 * bit, a read that meets end-of-file after the file shrank, a full io_uring submission queue,
 * and the setup errors of opening an image.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BLK_CONFIG_OFFSETS, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP } from '../../src/blk/spec.js'
import { DiskError } from '../../src/disks/errors.js'
import { FileDisk, type FileDiskOptions } from '../../src/disks/file.js'
import type { IoEngineName } from '../../src/disks/io-engine.js'
import { BlkRig, outHeader, rangeSegments, type Completed, type Piece } from '../helpers/blk.js'
import { pattern } from '../helpers/frontend.js'
import { expectSame, readFileAt } from '../helpers/bytes.js'

const MiB = 1 << 20
const silent = pino({ level: 'silent' })

let dir: string
const open: FileDisk[] = []

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-filedisk-'))
})

afterEach(() => {
  for (const d of open.splice(0)) d.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

function openDisk(opts: Partial<FileDiskOptions> & { path: string }): FileDisk {
  const d = FileDisk.open({ readOnly: false, direct: false, logicalBlockSize: 512, maxInFlight: 64, writeback: true, log: silent, ...opts })
  open.push(d)
  return d
}

/** Waits for the chains `heads` to complete (file I/O takes a while: poll up to 5 s). */
async function completion(rig: BlkRig, heads: number[]): Promise<Completed[]> {
  const done = new Map<number, Completed>()
  const deadline = Date.now() + 5000
  while (heads.some((h) => !done.has(h))) {
    if (Date.now() > deadline) throw new Error('request never completed')
    await new Promise((r) => setTimeout(r, 1))
    for (const [h, c] of rig.reap()) done.set(h, c)
  }
  return heads.map((h) => done.get(h)!)
}

/** Runs one chain to completion. */
async function run(rig: BlkRig, pieces: Piece[]): Promise<Completed> {
  const head = rig.add(pieces)
  rig.kick()
  return (await completion(rig, [head]))[0]
}

/** Linux-style write (header, data, status) → status. */
async function write(r: BlkRig, sector: number, data: Uint8Array): Promise<number> {
  return (await run(r, [{ out: outHeader(VIRTIO_BLK_T_OUT, sector) }, { out: data }, { inLen: 1 }])).status
}

/** Linux-style read (header, data, status) → status and data. */
async function read(r: BlkRig, sector: number, len: number): Promise<{ status: number; data: Uint8Array }> {
  const c = await run(r, [{ out: outHeader(VIRTIO_BLK_T_IN, sector) }, { inLen: len }, { inLen: 1 }])
  return { status: c.status, data: c.ins[0] }
}

function rig(disk: FileDisk, capacityBytes: number, queueDepth?: number): BlkRig {
  const r = new BlkRig({ ops: disk, capacityBytes, queueDepth })
  disk.attachWriteCache(r.device)
  return r
}

describe('the default engine', () => {
  it('is sync for an image on tmpfs (its I/O is a copy in memory)', () => {
    const shmDir = fs.mkdtempSync('/dev/shm/vub-filedisk-')
    try {
      const disk = openDisk({ path: path.join(shmDir, 'img'), sizeBytes: MiB })
      expect(disk.image.inMemory).toBe(true)
      expect(disk.engineName).toBe('sync')
      disk.close()
    } finally {
      fs.rmSync(shmDir, { recursive: true, force: true })
    }
  })

  const tmpOnDisk = fs.statfsSync(os.tmpdir()).type !== 0x01021994
  it.runIf(tmpOnDisk)('is io_uring for an image on a disk filesystem', () => {
    const disk = openDisk({ path: path.join(dir, 'img'), sizeBytes: MiB })
    expect(disk.image.inMemory).toBe(false)
    expect(disk.engineName).toBe('io_uring')
  })
})

describe.each<IoEngineName>(['io_uring', 'threads', 'sync'])('file disk on %s', (engine) => {
  it('writes and reads scattered segments at the right offsets, and flushes', async () => {
    const file = path.join(dir, 'img')
    const disk = openDisk({ path: file, sizeBytes: 8 * MiB, engine })
    expect(disk.engineName).toBe(engine)
    expect(disk.image.capacityBytes).toBe(8 * MiB)
    const r = rig(disk, 8 * MiB)
    const a = pattern(1536, 1)
    const b = pattern(2560, 2)
    const w = await run(r, [{ out: outHeader(VIRTIO_BLK_T_OUT, 100) }, { out: a }, { out: b }, { inLen: 1 }])
    expect(w.status).toBe(VIRTIO_BLK_S_OK)
    expectSame(readFileAt(file, 100 * 512, 4096), Buffer.concat([a, b]))
    const rd = await run(r, [{ out: outHeader(VIRTIO_BLK_T_IN, 100) }, { inLen: 512 }, { inLen: 3584 }, { inLen: 1 }])
    expect(rd.status).toBe(VIRTIO_BLK_S_OK)
    expect(rd.usedLen).toBe(4097)
    expectSame(Buffer.concat([rd.ins[0], rd.ins[1]]), Buffer.concat([a, b]))
    expect((await run(r, [{ out: outHeader(VIRTIO_BLK_T_FLUSH, 0) }, { inLen: 1 }])).status).toBe(VIRTIO_BLK_S_OK)
  })

  it('discard punches a hole; write-zeroes zeroes with and without UNMAP; empty ranges are skipped', async () => {
    const file = path.join(dir, 'img')
    const disk = openDisk({ path: file, sizeBytes: 8 * MiB, engine })
    const r = rig(disk, 8 * MiB)
    expect((await write(r, 0, pattern(4 * MiB, 3)))).toBe(VIRTIO_BLK_S_OK)
    fs.fdatasyncSync(disk.image.fd)
    const before = fs.statSync(file).blocks
    const d = await run(r, [{ out: outHeader(VIRTIO_BLK_T_DISCARD, 0) },
      { out: rangeSegments([{ sector: 0, sectors: 2048 }, { sector: 4096, sectors: 0 }]) }, { inLen: 1 }])
    expect(d.status).toBe(VIRTIO_BLK_S_OK)
    expect(fs.statSync(file).blocks).toBeLessThanOrEqual(before - 2048)
    const z = await run(r, [{ out: outHeader(VIRTIO_BLK_T_WRITE_ZEROES, 0) },
      { out: rangeSegments([{ sector: 2048, sectors: 16 }, { sector: 2080, sectors: 16, flags: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP }]) }, { inLen: 1 }])
    expect(z.status).toBe(VIRTIO_BLK_S_OK)
    const expected = Buffer.from(pattern(4 * MiB, 3))
    expected.fill(0, 0, MiB)
    expected.fill(0, MiB, MiB + 16 * 512)
    expected.fill(0, MiB + 32 * 512, MiB + 48 * 512)
    expectSame((await read(r, 0, 2 * MiB)).data, expected.subarray(0, 2 * MiB))
  })

  it('falls back to writing zeroes where the filesystem refuses ZERO_RANGE (tmpfs)', async () => {
    const shmDir = fs.mkdtempSync('/dev/shm/vub-filedisk-')
    try {
      const disk = openDisk({ path: path.join(shmDir, 'img'), sizeBytes: 4 * MiB, engine })
      const r = rig(disk, 4 * MiB)
      expect((await write(r, 0, pattern(3 * MiB, 4)))).toBe(VIRTIO_BLK_S_OK)
      // 2.5 MiB: more than one run of the zero buffer.
      const z = await run(r, [{ out: outHeader(VIRTIO_BLK_T_WRITE_ZEROES, 0) }, { out: rangeSegments([{ sector: 8, sectors: 5120 }]) }, { inLen: 1 }])
      expect(z.status).toBe(VIRTIO_BLK_S_OK)
      const expected = Buffer.from(pattern(3 * MiB, 4))
      expected.fill(0, 4096, 4096 + 5120 * 512)
      expectSame((await read(r, 0, 3 * MiB)).data, expected)
    } finally {
      fs.rmSync(shmDir, { recursive: true, force: true })
    }
  })

  it('follows the guest write-cache bit: writethrough writes and write-zeroes still land', async () => {
    const file = path.join(dir, 'img')
    const disk = openDisk({ path: file, sizeBytes: 4 * MiB, engine, writeback: false })
    const r = rig(disk, 4 * MiB)
    expect(r.device.setConfig(BLK_CONFIG_OFFSETS.wce, Uint8Array.of(0), 0)).toBe(true)
    expect(r.device.wce).toBe(0)
    expect((await write(r, 64, pattern(8192, 5)))).toBe(VIRTIO_BLK_S_OK)
    const z = await run(r, [{ out: outHeader(VIRTIO_BLK_T_WRITE_ZEROES, 0) }, { out: rangeSegments([{ sector: 64, sectors: 8 }]) }, { inLen: 1 }])
    expect(z.status).toBe(VIRTIO_BLK_S_OK)
    const expected = Buffer.from(pattern(8192, 5))
    expected.fill(0, 0, 4096)
    expectSame(readFileAt(file, 64 * 512, 8192), expected)
  })

  it('a read that meets end-of-file (the file shrank) continues the short read and reads zeroes past the end', async () => {
    const file = path.join(dir, 'img')
    const disk = openDisk({ path: file, sizeBytes: 4 * MiB, engine })
    const r = rig(disk, 4 * MiB)
    expect((await write(r, 0, pattern(64 * 1024, 6)))).toBe(VIRTIO_BLK_S_OK)
    fs.truncateSync(file, 40 * 1024)
    const rd = await read(r, 0, 64 * 1024)
    expect(rd.status).toBe(VIRTIO_BLK_S_OK)
    const expected = Buffer.from(pattern(64 * 1024, 6))
    expected.fill(0, 40 * 1024)
    expectSame(rd.data, expected)
  })
})

describe('file disk on io_uring', () => {
  it('a submission queue smaller than the batch submits early and loses nothing', async () => {
    const disk = openDisk({ path: path.join(dir, 'img'), sizeBytes: 4 * MiB, engine: 'io_uring', maxInFlight: 1 })
    const r = rig(disk, 4 * MiB, 32)
    const heads = Array.from({ length: 32 }, (_, i) =>
      r.add([{ out: outHeader(VIRTIO_BLK_T_OUT, i * 8) }, { out: pattern(4096, 10 + i) }, { inLen: 1 }], true))
    r.kick()
    expect((await completion(r, heads)).map((c) => c.status)).toEqual(Array(32).fill(VIRTIO_BLK_S_OK))
    for (let i = 0; i < 32; i++) expectSame((await read(r, i * 8, 4096)).data, pattern(4096, 10 + i))
  })
})

describe('opening an image', () => {
  function code(fn: () => unknown): string {
    try {
      fn()
    } catch (err) {
      expect(err).toBeInstanceOf(DiskError)
      return (err as DiskError).code
    }
    throw new Error('expected a DiskError')
  }

  it('creates a missing file and grows a short one, sparse; never shrinks', () => {
    const file = path.join(dir, 'new')
    openDisk({ path: file, sizeBytes: 64 * MiB }).close()
    expect(fs.statSync(file).size).toBe(64 * MiB)
    expect(fs.statSync(file).blocks).toBe(0)
    fs.writeFileSync(file, 'keep me')
    const d = openDisk({ path: file, sizeBytes: MiB })
    expect(d.image.capacityBytes).toBe(MiB)
    expect(readFileAt(file, 0, 7).toString()).toBe('keep me')
    d.close()
    expect(openDisk({ path: file, sizeBytes: 4096 }).image.capacityBytes).toBe(MiB)
  })

  it('serves whole logical blocks only, and refuses what cannot be served', () => {
    const file = path.join(dir, 'odd')
    fs.writeFileSync(file, Buffer.alloc(4096 + 100))
    expect(openDisk({ path: file, logicalBlockSize: 4096 }).image.capacityBytes).toBe(4096)
    expect(code(() => openDisk({ path: path.join(dir, 'missing') }))).toBe('EDISK_NOT_FOUND')
    fs.writeFileSync(path.join(dir, 'tiny'), Buffer.alloc(100))
    expect(code(() => openDisk({ path: path.join(dir, 'tiny') }))).toBe('EDISK_SIZE')
    expect(code(() => openDisk({ path: dir }))).toBe('EDISK_OPEN')
  })

  it('locks the image: one writer, or any number of readers', () => {
    const file = path.join(dir, 'img')
    const writer = openDisk({ path: file, sizeBytes: MiB })
    expect(code(() => openDisk({ path: file }))).toBe('EDISK_LOCKED')
    expect(code(() => openDisk({ path: file, readOnly: true }))).toBe('EDISK_LOCKED')
    writer.close()
    openDisk({ path: file, readOnly: true })
    openDisk({ path: file, readOnly: true })
    expect(code(() => openDisk({ path: file }))).toBe('EDISK_LOCKED')
  })
})
