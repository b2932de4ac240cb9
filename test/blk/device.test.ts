/**
 * The virtio-blk device over a real ring in mock guest memory: every request type, byte-level
 * parsing (merged and split descriptors), every validation rule, malformed chains failing alone,
 * tag exhaustion without loss, and one notification per batch (of up to 16 completions).
 */
import { describe, expect, it } from 'vitest'
import {
  VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_GET_LIFETIME, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
} from '../../src/blk/spec.js'
import { MemoryDisk } from '../../src/disks/memory.js'
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../src/virtqueue/index.js'
import { BlkRig, outHeader, rangeSegments } from '../helpers/blk.js'
import { TestDisk } from '../helpers/disks.js'

function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len)
  for (let i = 0; i < len; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff
  return out
}

function memRig(opts: Partial<ConstructorParameters<typeof BlkRig>[0]> = {}): BlkRig {
  return new BlkRig({ ops: MemoryDisk.create(opts.capacityBytes ?? 1 << 20), ...opts })
}

describe('read and write', () => {
  it('reads back what was written; used.len counts device-written bytes', async () => {
    const rig = memRig()
    const data = pattern(4096, 1)
    expect(await rig.write(8, data)).toEqual({ status: VIRTIO_BLK_S_OK, usedLen: 1 })
    const r = await rig.read(8, 4096)
    expect(r.status).toBe(VIRTIO_BLK_S_OK)
    expect(r.usedLen).toBe(4097)
    expect(r.data).toEqual(data)
  })

  it('unwritten sectors read as zeroes', async () => {
    const r = await memRig().read(100, 1024)
    expect(r.data).toEqual(new Uint8Array(1024))
  })

  it('parses by bytes: header merged with data, status merged with data', async () => {
    const rig = memRig()
    const data = pattern(1024, 2)
    const merged = new Uint8Array(16 + 1024)
    merged.set(outHeader(VIRTIO_BLK_T_OUT, 4))
    merged.set(data, 16)
    const w = await rig.run([{ out: merged }, { inLen: 1 }])
    expect(w.status).toBe(VIRTIO_BLK_S_OK)
    const r = await rig.run([{ out: outHeader(VIRTIO_BLK_T_IN, 4) }, { inLen: 1025 }])
    expect(r.status).toBe(VIRTIO_BLK_S_OK)
    expect(r.usedLen).toBe(1025)
    expect(r.ins[0].subarray(0, 1024)).toEqual(data)
  })

  it('header split over several descriptors, data over many small ones, through an indirect table', async () => {
    const rig = memRig()
    const header = outHeader(VIRTIO_BLK_T_OUT, 16)
    const data = pattern(2048, 3)
    const pieces = [{ out: header.subarray(0, 5) }, { out: header.subarray(5, 16) }]
    for (let off = 0; off < 2048; off += 128) pieces.push({ out: data.subarray(off, off + 128) })
    expect((await rig.run([...pieces, { inLen: 1 }], true)).status).toBe(VIRTIO_BLK_S_OK)
    const readPieces = [{ out: outHeader(VIRTIO_BLK_T_IN, 16) }, ...Array.from({ length: 16 }, () => ({ inLen: 128 })), { inLen: 1 }]
    const r = await rig.run(readPieces, true)
    expect(r.status).toBe(VIRTIO_BLK_S_OK)
    expect(Buffer.concat(r.ins.slice(0, 16))).toEqual(Buffer.from(data))
  })

  it('a zero-length read or write succeeds without touching the disk', async () => {
    const rig = memRig()
    expect((await rig.run([{ out: outHeader(VIRTIO_BLK_T_IN, 0) }, { inLen: 1 }])).status).toBe(VIRTIO_BLK_S_OK)
  })
})

describe('other request types', () => {
  it('FLUSH succeeds', async () => {
    const c = await memRig().run([{ out: outHeader(VIRTIO_BLK_T_FLUSH, 0) }, { inLen: 1 }])
    expect(c).toMatchObject({ status: VIRTIO_BLK_S_OK, usedLen: 1 })
  })

  it('GET_ID returns the serial NUL-padded to 20 bytes', async () => {
    const c = await memRig({ serial: 'disk-42' }).run([{ out: outHeader(VIRTIO_BLK_T_GET_ID, 0) }, { inLen: 20 }, { inLen: 1 }])
    expect(c.status).toBe(VIRTIO_BLK_S_OK)
    expect(c.usedLen).toBe(21)
    expect(Buffer.from(c.ins[0]).toString('latin1')).toBe('disk-42'.padEnd(20, '\0'))
  })

  it.each([VIRTIO_BLK_T_GET_LIFETIME, 99, 0xffffffff])('type %d is UNSUPP', async (type) => {
    const c = await memRig().run([{ out: outHeader(type, 0) }, { inLen: 64 }, { inLen: 1 }])
    expect(c.status).toBe(VIRTIO_BLK_S_UNSUPP)
  })

  it('DISCARD and WRITE_ZEROES take several ranges and zero them', async () => {
    const rig = memRig()
    await rig.write(0, pattern(64 * 512, 4))
    const discard = rangeSegments([{ sector: 0, sectors: 8 }, { sector: 32, sectors: 8 }])
    expect((await rig.run([{ out: outHeader(VIRTIO_BLK_T_DISCARD, 0) }, { out: discard }, { inLen: 1 }])).status).toBe(VIRTIO_BLK_S_OK)
    const zeroes = rangeSegments([{ sector: 16, sectors: 4, flags: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP }, { sector: 48, sectors: 4 }])
    expect((await rig.run([{ out: outHeader(VIRTIO_BLK_T_WRITE_ZEROES, 0) }, { out: zeroes }, { inLen: 1 }])).status).toBe(VIRTIO_BLK_S_OK)
    const r = await rig.read(0, 64 * 512)
    const expected = pattern(64 * 512, 4)
    for (const [s, n] of [[0, 8], [32, 8], [16, 4], [48, 4]]) expected.fill(0, s * 512, (s + n) * 512)
    expect(r.data).toEqual(expected)
  })

  it.each([
    ['UNMAP on DISCARD', VIRTIO_BLK_T_DISCARD, [{ sector: 0, sectors: 8, flags: 1 }], VIRTIO_BLK_S_UNSUPP],
    ['an unknown flag', VIRTIO_BLK_T_WRITE_ZEROES, [{ sector: 0, sectors: 8, flags: 2 }], VIRTIO_BLK_S_UNSUPP],
    ['a range past the end', VIRTIO_BLK_T_DISCARD, [{ sector: 2040, sectors: 16 }], VIRTIO_BLK_S_IOERR],
    ['a sector beyond 2^53', VIRTIO_BLK_T_DISCARD, [{ sector: 1n << 62n, sectors: 8 }], VIRTIO_BLK_S_IOERR],
    ['more sectors than max_discard_sectors', VIRTIO_BLK_T_DISCARD, [{ sector: 0, sectors: 64 }], VIRTIO_BLK_S_IOERR],
    ['more segments than max_discard_seg', VIRTIO_BLK_T_DISCARD, [0, 8, 16, 24, 32].map((s) => ({ sector: s, sectors: 8 })), VIRTIO_BLK_S_IOERR],
  ])('a range request with %s fails', async (_what, type, ranges, status) => {
    const rig = memRig({ discardMaxSegments: 4, discardMaxSectors: 32 })
    const c = await rig.run([{ out: outHeader(type, 0) }, { out: rangeSegments(ranges) }, { inLen: 1 }])
    expect(c.status).toBe(status)
  })

  it('a range payload that is not a whole number of segments is IOERR', async () => {
    const c = await memRig().run([{ out: outHeader(VIRTIO_BLK_T_DISCARD, 0) }, { out: new Uint8Array(20) }, { inLen: 1 }])
    expect(c.status).toBe(VIRTIO_BLK_S_IOERR)
  })
})

describe('validation', () => {
  it.each([
    ['a length that is not a multiple of 512', 0, 1000],
    ['a sector past the end', 2048, 512],
    ['a range running past the end', 2047, 1024],
    ['a sector near 2^64', Number.MAX_SAFE_INTEGER, 512],
  ])('a read with %s is IOERR', async (_what, sector, len) => {
    const c = await memRig().run([{ out: outHeader(VIRTIO_BLK_T_IN, sector) }, { inLen: len }, { inLen: 1 }])
    expect(c.status).toBe(VIRTIO_BLK_S_IOERR)
    expect(c.usedLen).toBe(1)
  })

  it('4096-byte logical blocks: misaligned sector or length is IOERR', async () => {
    const rig = memRig({ logicalBlockSize: 4096 })
    expect((await rig.read(1, 4096)).status).toBe(VIRTIO_BLK_S_IOERR)
    expect((await rig.read(8, 512)).status).toBe(VIRTIO_BLK_S_IOERR)
    expect((await rig.read(8, 4096)).status).toBe(VIRTIO_BLK_S_OK)
  })

  it('read-only: writes, discards and write-zeroes are IOERR, reads work', async () => {
    const rig = memRig({ readOnly: true })
    expect((await rig.write(0, pattern(512, 5))).status).toBe(VIRTIO_BLK_S_IOERR)
    for (const type of [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES]) {
      const c = await rig.run([{ out: outHeader(type, 0) }, { out: rangeSegments([{ sector: 0, sectors: 8 }]) }, { inLen: 1 }])
      expect(c.status).toBe(VIRTIO_BLK_S_IOERR)
    }
    expect((await rig.read(0, 512)).status).toBe(VIRTIO_BLK_S_OK)
  })

  it('a header shorter than 16 bytes is IOERR', async () => {
    const c = await memRig().run([{ out: new Uint8Array(8) }, { inLen: 1 }])
    expect(c.status).toBe(VIRTIO_BLK_S_IOERR)
  })

  it('a chain without a writable byte completes with used.len 0', async () => {
    const c = await memRig().run([{ out: outHeader(VIRTIO_BLK_T_IN, 0) }, { out: new Uint8Array(512) }])
    expect(c.usedLen).toBe(0)
  })

  it('a chain with more segments than a request holds fails alone with IOERR in its status byte', async () => {
    const rig = memRig({ maxSegments: 4 })
    const pieces = [{ out: outHeader(VIRTIO_BLK_T_IN, 0) }, ...Array.from({ length: 16 }, () => ({ inLen: 512 })), { inLen: 1 }]
    const c = await rig.run(pieces, true)
    expect(c).toMatchObject({ status: VIRTIO_BLK_S_IOERR, usedLen: 1 })
    expect((await rig.read(0, 2048)).status).toBe(VIRTIO_BLK_S_OK)
  })

  it('an indirect table longer than the ring is served (Linux sizes tables by seg_max, not by the ring)', async () => {
    const rig = memRig({ queueSize: 16 })
    const data = pattern(200 * 512, 8)
    const pieces = [{ out: outHeader(VIRTIO_BLK_T_OUT, 0) }]
    for (let i = 0; i < 200; i++) pieces.push({ out: data.subarray(i * 512, (i + 1) * 512) })
    expect((await rig.run([...pieces, { inLen: 1 }], true)).status).toBe(VIRTIO_BLK_S_OK)
    expect(Buffer.from((await rig.read(0, data.length)).data).equals(Buffer.from(data))).toBe(true)
  })
})

describe('hostile chains fail alone', () => {
  it('a descriptor loop completes with used.len 0 and the queue keeps working', async () => {
    const rig = memRig({ queueSize: 8 })
    const head = rig.add([{ out: outHeader(VIRTIO_BLK_T_IN, 0) }, { inLen: 512 }, { inLen: 1 }])
    // The head now points at itself: the walker must stop at the queue size.
    rig.driver.writeDescriptor(head, rig.reserve(16), 16, VIRTQ_DESC_F_NEXT, head)
    rig.kick()
    expect(rig.vq.broken).toBe(false)
    expect(rig.reap().get(head)?.usedLen).toBe(0)
    const data = pattern(512, 6)
    expect((await rig.write(0, data)).status).toBe(VIRTIO_BLK_S_OK)
    expect((await rig.read(0, 512)).data).toEqual(data)
  })

  it('a buffer outside guest memory completes with used.len 0', async () => {
    const rig = memRig({ queueSize: 8 })
    const head = rig.add([{ inLen: 512 }])
    rig.driver.writeDescriptor(head, 0x7fff_0000_0000, 512, VIRTQ_DESC_F_WRITE, 0)
    rig.kick()
    expect(rig.reap().get(head)?.usedLen).toBe(0)
    expect(rig.vq.broken).toBe(false)
  })

  it('an avail index jump marks only this queue broken; nothing throws', async () => {
    const rig = memRig({ queueSize: 8 })
    rig.driver.setAvailIdx(100)
    expect(() => rig.queue.kick()).not.toThrow()
    expect(rig.vq.broken).toBe(true)
  })
})

describe('batching and backpressure', () => {
  it('a batch of completions is published once with one notification', async () => {
    const rig = memRig({ eventIdx: false })
    for (let i = 0; i < 10; i++) rig.add([{ out: outHeader(VIRTIO_BLK_T_IN, i) }, { inLen: 512 }, { inLen: 1 }])
    rig.kick()
    expect(rig.reap().size).toBe(10)
    expect(rig.notifications).toBe(1)
  })

  it('a long batch publishes every 16 completions, so the guest can reap while the rest run', async () => {
    const rig = memRig({ eventIdx: false })
    for (let i = 0; i < 40; i++) rig.add([{ out: outHeader(VIRTIO_BLK_T_IN, i) }, { inLen: 512 }, { inLen: 1 }], true)
    rig.kick()
    expect(rig.usedIdxAtNotify).toEqual([16, 32, 40])
    expect(rig.reap().size).toBe(40)
  })

  it('a queue takes at most 256 chains per turn of the event loop, then the rest on the next', async () => {
    const rig = memRig({ queueSize: 512 })
    for (let i = 0; i < 300; i++) rig.add([{ out: outHeader(VIRTIO_BLK_T_IN, i) }, { inLen: 512 }, { inLen: 1 }], true)
    rig.kick()
    expect(rig.reap().size).toBe(256)
    await new Promise((r) => setImmediate(r))
    expect(rig.reap().size).toBe(44)
  })

  it('queue depth below the ring: chains wait in the ring until tags free, none lost', async () => {
    const disk = new TestDisk({ size: 1 << 20, completion: 'microtask' })
    const rig = new BlkRig({ ops: disk, queueSize: 64, queueDepth: 2 })
    const heads = new Set<number>()
    for (let i = 0; i < 40; i++) heads.add(rig.add([{ out: outHeader(VIRTIO_BLK_T_IN, i) }, { inLen: 512 }, { inLen: 1 }], true))
    rig.kick()
    expect(rig.tagSet.hwQueues[0].inFlight).toBeLessThanOrEqual(2)
    const done = new Map<number, { status: number }>()
    for (let i = 0; i < 200 && done.size < 40; i++) {
      await new Promise((r) => setTimeout(r, 1))
      for (const [id, c] of rig.reap()) done.set(id, c)
    }
    expect(new Set(done.keys())).toEqual(heads)
    expect([...done.values()].every((c) => c.status === VIRTIO_BLK_S_OK)).toBe(true)
  })

  it('stop() resolves only after requests in flight completed', async () => {
    const disk = new TestDisk({ size: 1 << 20, completion: 'manual' })
    const rig = new BlkRig({ ops: disk })
    rig.add([{ out: outHeader(VIRTIO_BLK_T_IN, 0) }, { inLen: 512 }, { inLen: 1 }])
    rig.kick()
    let stopped = false
    const p = rig.queue.stop()!
    void p.then(() => (stopped = true))
    await new Promise((r) => setTimeout(r, 5))
    expect(stopped).toBe(false)
    disk.release()
    await p
    expect(rig.reap().size).toBe(1)
  })
})

describe('config space', () => {
  it('derives virtio_blk_config from the disk', () => {
    const rig = memRig({ capacityBytes: 8 << 20, logicalBlockSize: 4096 })
    const cfg = new DataView(rig.device.getConfig(0, 60)!.buffer.slice(0))
    expect(Number(cfg.getBigUint64(0, true))).toBe((8 << 20) / 512)
    expect(cfg.getUint32(20, true)).toBe(4096)
    expect(cfg.getUint32(12, true)).toBe(254)
    expect(cfg.getUint32(8, true)).toBeGreaterThan(0)
    expect(cfg.getUint8(32)).toBe(1)
    expect(cfg.getUint32(40, true)).toBe(256)
  })

  it('answers exactly the length asked; refuses beyond 256 bytes', () => {
    const rig = memRig()
    expect(rig.device.getConfig(32, 1)).toHaveLength(1)
    expect(rig.device.getConfig(0, 96)).toHaveLength(96)
    expect(rig.device.getConfig(200, 100)).toBeNull()
  })

  it('writes through when the guest did not negotiate FLUSH', () => {
    const rig = memRig()
    rig.device.setFeatures(rig.device.features & ~(1n << 9n))
    expect(rig.device.getConfig(32, 1)![0]).toBe(0)
    rig.device.reset()
    expect(rig.device.getConfig(32, 1)![0]).toBe(1)
  })

  it('only the wce byte is writable, by the frontend', () => {
    const rig = memRig()
    expect(rig.device.setConfig(32, Uint8Array.of(0), 0)).toBe(true)
    expect(rig.device.getConfig(32, 1)![0]).toBe(0)
    expect(rig.device.setConfig(32, Uint8Array.of(1), 1)).toBe(false)
    expect(rig.device.setConfig(0, new Uint8Array(8), 0)).toBe(false)
  })
})
