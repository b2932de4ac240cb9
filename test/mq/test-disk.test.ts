import { describe, it, expect, afterEach, vi } from 'vitest'
import { BlkStatus, GenDiskBuilder, ReqFlag, ReqOp } from '../../src/mq/index.js'
import type { Request } from '../../src/mq/index.js'
import { mustSubmit, setSegments, setup } from './harness.js'

afterEach(() => {
  vi.useRealTimers()
})

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff)

/** Fill a read or write of `buffers` at `sector`. */
const io = (op: number, sector: number, buffers: Uint8Array[]) => (rq: Request) => {
  rq.op = op as Request['op']
  rq.sector = sector
  rq.sectors = buffers.reduce((n, b) => n + b.length, 0) / 512
  setSegments(rq, buffers)
}

/** Fill a discard / write-zeroes request with `[sector, sectors]` ranges. */
const ranges = (op: number, list: Array<[number, number]>) => (rq: Request) => {
  rq.op = op as Request['op']
  list.forEach(([sector, sectors], i) => {
    rq.rangeSector[i] = sector
    rq.rangeSectors[i] = sectors
    rq.rangeFlags[i] = ReqFlag.UNMAP
  })
  rq.nrRanges = list.length
}

describe('TestDisk serving requests through mq', () => {
  it('writes scattered segments and reads them back into other segments', () => {
    const h = setup()
    const a = pattern(512, 1)
    const b = pattern(1024, 2)
    mustSubmit(h.hwq, h.disk, io(ReqOp.Write, 4, [a, b]))
    const out = [new Uint8Array(1024), new Uint8Array(512)]
    mustSubmit(h.hwq, h.disk, io(ReqOp.Read, 4, out))
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.OK, BlkStatus.OK])
    expect(h.ended[1].bytesDone).toBe(1536)
    expect(Buffer.concat(out)).toEqual(Buffer.concat([a, b]))
    expect(h.driver.data.subarray(4 * 512, 4 * 512 + 512)).toEqual(a)
  })

  it('honours segment offsets', () => {
    const h = setup()
    const big = pattern(2048, 3)
    mustSubmit(h.hwq, h.disk, (rq) => {
      rq.op = ReqOp.Write
      rq.sector = 0
      rq.sectors = 1
      rq.segBuffer[0] = big
      rq.segOffset[0] = 1024
      rq.segLength[0] = 512
      rq.nrSegments = 1
    })
    expect(h.driver.data.subarray(0, 512)).toEqual(big.subarray(1024, 1536))
  })

  it('fails out-of-range and short I/O with IOERR and writes to a read-only disk with PROTECTION', () => {
    const h = setup()
    const ro = new GenDiskBuilder().name('ro').capacitySectors(16).readOnly(true).build(h.ts)
    mustSubmit(h.hwq, h.disk, io(ReqOp.Read, h.disk.capacitySectors, [new Uint8Array(512)]))
    mustSubmit(h.hwq, h.disk, (rq) => { io(ReqOp.Read, 0, [new Uint8Array(512)])(rq); rq.sectors = 2 })
    mustSubmit(h.hwq, ro, io(ReqOp.Write, 0, [new Uint8Array(512)]))
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.IOERR, BlkStatus.IOERR, BlkStatus.PROTECTION])
  })

  it('counts flushes', () => {
    const h = setup()
    mustSubmit(h.hwq, h.disk, (rq) => { rq.op = ReqOp.Flush })
    expect(h.driver.flushes).toBe(1)
    expect(h.ended[0].status).toBe(BlkStatus.OK)
  })

  it('zeroes discard and write-zeroes ranges, several per request', () => {
    const h = setup()
    h.driver.data.fill(0xaa)
    mustSubmit(h.hwq, h.disk, ranges(ReqOp.Discard, [[0, 1], [4, 2]]))
    mustSubmit(h.hwq, h.disk, ranges(ReqOp.WriteZeroes, [[10, 1]]))
    const zeroed = (s: number) => h.driver.data.subarray(s * 512, s * 512 + 512).every((x) => x === 0)
    expect([0, 1, 4, 5, 6, 10, 11].map(zeroed)).toEqual([true, false, true, true, false, true, false])
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.OK, BlkStatus.OK])
  })

  it('answers NOTSUPP for discard or write-zeroes on a disk without them', () => {
    const h = setup()
    const plain = new GenDiskBuilder().name('plain').capacitySectors(16).build(h.ts)
    mustSubmit(h.hwq, plain, ranges(ReqOp.Discard, [[0, 1]]))
    mustSubmit(h.hwq, plain, ranges(ReqOp.WriteZeroes, [[0, 1]]))
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.NOTSUPP, BlkStatus.NOTSUPP])
  })

  it('writes the serial for GetId, zero-padded to 20 bytes, across segments', () => {
    const h = setup()
    const parts = [new Uint8Array(5).fill(0xff), new Uint8Array(32).fill(0xff)]
    mustSubmit(h.hwq, h.disk, (rq) => { rq.op = ReqOp.GetId; setSegments(rq, parts) })
    expect(h.ended[0].bytesDone).toBe(20)
    const id = Buffer.concat(parts).subarray(0, 20)
    expect(id.subarray(0, 8).toString()).toBe('SERIAL-1')
    expect([...id.subarray(8)].every((x) => x === 0)).toBe(true)
    expect(parts[1][15]).toBe(0xff) // nothing past 20 bytes
  })
})

describe('TestDisk completion modes and faults', () => {
  it("'microtask' ends after queueRq returned, before the next macrotask", async () => {
    const h = setup({}, { completion: 'microtask' })
    mustSubmit(h.hwq, h.disk)
    expect(h.ended).toHaveLength(0)
    await Promise.resolve()
    expect(h.ended).toHaveLength(1)
  })

  it("'timer' ends after timerMs", () => {
    vi.useFakeTimers()
    const h = setup({}, { completion: 'timer', timerMs: 7 })
    mustSubmit(h.hwq, h.disk)
    vi.advanceTimersByTime(6)
    expect(h.ended).toHaveLength(0)
    vi.advanceTimersByTime(1)
    expect(h.ended).toHaveLength(1)
  })

  it('fails exactly the next k requests, then serves again', () => {
    const h = setup()
    h.driver.failNext(2, BlkStatus.IOERR)
    for (let i = 0; i < 3; i++) mustSubmit(h.hwq, h.disk, (rq) => { rq.op = ReqOp.Flush })
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.IOERR, BlkStatus.IOERR, BlkStatus.OK])
    expect(h.driver.flushes).toBe(1)
  })
})
