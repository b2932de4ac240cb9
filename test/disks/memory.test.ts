/**
 * The memory disk through the mq layer: sparse storage (a 1 TiB disk starts empty, reads of
 * unwritten sectors allocate nothing, writes hold only their pages, discard gives pages back),
 * transfers across a mapping window and across written/unwritten pages, partial-page zeroing,
 * and a second instance over the same store (what an I/O thread attaches) sharing the data.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { MAX_MEMORY_DISK_BYTES, MemoryDisk } from '../../src/disks/memory.js'
import { BlkStatus, GenDiskBuilder, ReqOp, TagSet, type GenDisk, type HwQueue, type Request } from '../../src/mq/index.js'

const KiB = 1024
const GiB = 1 << 30
const TiB = 2 ** 40

/** A disk driver behind its own tag set, driven request by request. */
class Rig {
  readonly tagSet: TagSet
  readonly disk: GenDisk
  readonly hwq: HwQueue
  private readonly ended = new Map<number, number>()

  constructor(readonly driver: MemoryDisk, bytes: number) {
    this.tagSet = new TagSet({ nrHwQueues: 1, queueDepth: 4, ops: driver, maxSegments: 4, maxRanges: 4 })
    this.disk = new GenDiskBuilder().name('m').capacityBytes(bytes).maxSectors(1 << 16)
      .discard({ maxSectors: 1 << 30, maxSegments: 4, granularitySectors: 1 })
      .writeZeroes({ maxSectors: 1 << 30, maxSegments: 4, mayUnmap: true })
      .build(this.tagSet)
    this.hwq = this.tagSet.hwQueues[0]
    this.hwq.onEnd = (rq: Request) => this.ended.set(rq.tag, rq.status)
  }

  /** Runs one request to its end; `fill` sets it up. */
  async run(fill: (rq: Request) => void): Promise<number> {
    const rq = this.hwq.tryAllocRequest(this.disk)!
    fill(rq)
    this.ended.delete(rq.tag)
    this.hwq.dispatch(rq, true)
    for (let i = 0; i < 200 && !this.ended.has(rq.tag); i++) await new Promise((r) => setTimeout(r, 2))
    return this.ended.get(rq.tag) ?? -1
  }

  /** Writes `data` (split into two segments when `split`) at byte `pos`. */
  write(pos: number, data: Uint8Array, split = false): Promise<number> {
    return this.run((rq) => {
      rq.op = ReqOp.Write
      rq.sector = pos / 512
      rq.sectors = data.length / 512
      const half = split ? data.length / 2 : data.length
      rq.segBuffer[0] = data
      rq.segOffset[0] = 0
      rq.segLength[0] = half
      rq.nrSegments = 1
      if (split) {
        rq.segBuffer[1] = data
        rq.segOffset[1] = half
        rq.segLength[1] = data.length - half
        rq.nrSegments = 2
      }
    })
  }

  async read(pos: number, len: number): Promise<Uint8Array> {
    const out = new Uint8Array(len).fill(0xee)
    const status = await this.run((rq) => {
      rq.op = ReqOp.Read
      rq.sector = pos / 512
      rq.sectors = len / 512
      rq.segBuffer[0] = out
      rq.segOffset[0] = 0
      rq.segLength[0] = len
      rq.nrSegments = 1
    })
    expect(status).toBe(BlkStatus.OK)
    return out
  }

  zero(op: typeof ReqOp.Discard | typeof ReqOp.WriteZeroes, ranges: Array<[number, number]>): Promise<number> {
    return this.run((rq) => {
      rq.op = op
      ranges.forEach(([pos, len], i) => {
        rq.rangeSector[i] = pos / 512
        rq.rangeSectors[i] = len / 512
      })
      rq.nrRanges = ranges.length
    })
  }
}

function bytes(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len)
  for (let i = 0; i < len; i++) out[i] = (i * 7 + seed * 13 + (i >> 8)) & 0xff || 1
  return out
}

const open: MemoryDisk[] = []
function disk(size: number): MemoryDisk {
  const d = MemoryDisk.create(size)
  open.push(d)
  return d
}

afterEach(() => {
  for (const d of open.splice(0)) d.close()
})

describe('a sparse memory disk', () => {
  it('a 1 TiB disk starts empty; unwritten sectors read as zeroes and allocate nothing', async () => {
    const rig = new Rig(disk(TiB), TiB)
    expect(rig.driver.allocatedBytes).toBe(0)
    for (const pos of [0, 512 * GiB, TiB - 64 * KiB]) expect(await rig.read(pos, 64 * KiB)).toEqual(new Uint8Array(64 * KiB))
    expect(rig.driver.allocatedBytes).toBe(0)
  })

  it('holds only the pages written, and reads them back', async () => {
    const rig = new Rig(disk(TiB), TiB)
    const a = bytes(4 * KiB, 1)
    const b = bytes(8 * KiB, 2)
    expect(await rig.write(3 * GiB, a)).toBe(BlkStatus.OK)
    expect(await rig.write(700 * GiB + 4 * KiB, b, true)).toBe(BlkStatus.OK)
    expect(rig.driver.allocatedBytes).toBe(12 * KiB)
    expect(await rig.read(3 * GiB, a.length)).toEqual(a)
    expect(await rig.read(700 * GiB + 4 * KiB, b.length)).toEqual(b)
  })

  it('a read over written and unwritten pages, and across a mapping window, gets each part right', async () => {
    const rig = new Rig(disk(4 * GiB), 4 * GiB)
    const data = bytes(8 * KiB, 3)
    // Written: [1 GiB - 4 KiB, 1 GiB + 4 KiB), across the first window boundary; the pages around stay unwritten.
    expect(await rig.write(GiB - 4 * KiB, data)).toBe(BlkStatus.OK)
    const got = await rig.read(GiB - 12 * KiB, 24 * KiB)
    const expected = new Uint8Array(24 * KiB)
    expected.set(data, 8 * KiB)
    expect(got).toEqual(expected)
  })

  it('a write of less than a page keeps the rest of the page zero', async () => {
    const rig = new Rig(disk(GiB), GiB)
    const data = bytes(512, 4)
    expect(await rig.write(4096 + 1024, data)).toBe(BlkStatus.OK)
    const expected = new Uint8Array(4096)
    expected.set(data, 1024)
    expect(await rig.read(4096, 4096)).toEqual(expected)
  })

  it.each([ReqOp.Discard, ReqOp.WriteZeroes] as const)('op %i gives whole pages back and zeroes partial ones in place', async (op) => {
    const rig = new Rig(disk(GiB), GiB)
    const data = bytes(64 * KiB, 5)
    expect(await rig.write(0, data)).toBe(BlkStatus.OK)
    expect(rig.driver.allocatedBytes).toBe(64 * KiB)
    // [1 KiB, 40 KiB): page 0 partly, pages 1..9 wholly; [60 KiB, 61 KiB): a piece of page 15.
    expect(await rig.zero(op, [[KiB, 39 * KiB], [60 * KiB, KiB]])).toBe(BlkStatus.OK)
    expect(rig.driver.allocatedBytes).toBe((64 - 36) * KiB)
    const expected = Buffer.from(data)
    expected.fill(0, KiB, 40 * KiB)
    expected.fill(0, 60 * KiB, 61 * KiB)
    expect(Buffer.from(await rig.read(0, 64 * KiB)).equals(expected)).toBe(true)
    // A discarded page written again holds the new bytes and zeroes elsewhere.
    const again = bytes(512, 6)
    expect(await rig.write(8 * KiB, again)).toBe(BlkStatus.OK)
    const page = new Uint8Array(4 * KiB)
    page.set(again)
    expect(await rig.read(8 * KiB, 4 * KiB)).toEqual(page)
  })

  it('an attached instance (another thread\'s) shares the data both ways', async () => {
    const owner = disk(2 * GiB)
    const attached = MemoryDisk.attach(owner.store)
    const a = new Rig(owner, 2 * GiB)
    const b = new Rig(attached, 2 * GiB)
    try {
      expect(await a.write(GiB + 8 * KiB, bytes(16 * KiB, 7))).toBe(BlkStatus.OK)
      expect(await b.read(GiB + 8 * KiB, 16 * KiB)).toEqual(bytes(16 * KiB, 7))
      expect(await b.write(4 * KiB, bytes(4 * KiB, 8))).toBe(BlkStatus.OK)
      expect(await b.zero(ReqOp.Discard, [[GiB + 8 * KiB, 8 * KiB]])).toBe(BlkStatus.OK)
      expect(await a.read(4 * KiB, 4 * KiB)).toEqual(bytes(4 * KiB, 8))
      const tail = new Uint8Array(16 * KiB)
      tail.set(bytes(16 * KiB, 7).subarray(8 * KiB), 8 * KiB)
      expect(await a.read(GiB + 8 * KiB, 16 * KiB)).toEqual(tail)
    } finally {
      attached.close()
    }
    // The attached instance's close leaves the owner's memfd open.
    expect(owner.allocatedBytes).toBe(12 * KiB)
  })

  it.each([0, 511, MAX_MEMORY_DISK_BYTES + 512])('refuses a size of %d bytes (EDISK_SIZE)', (size) => {
    expect(() => MemoryDisk.create(size)).toThrow(expect.objectContaining({ code: 'EDISK_SIZE' }))
  })
})
