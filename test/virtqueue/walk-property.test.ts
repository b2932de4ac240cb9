/**
 * Property: whatever the driver scribbles over descriptor fields (addr, len, flags, next, in the main table or in an
 * indirect table), the device's walk returns either exactly the chain a straightforward model of virtio 1.2 §2.7.5
 * reads from the same memory, or an error code; and it never yields a segment outside the guest's regions. With no
 * corruption the result is exactly the driver's chain.
 */
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import {
  ChainError,
  DescChain,
  MAX_INDIRECT_ENTRIES,
  VIRTQ_DESC_F_INDIRECT as INDIRECT,
  VIRTQ_DESC_F_NEXT as NEXT,
  VIRTQ_DESC_F_WRITE as WRITE,
  type DriverSegment,
} from '../../src/virtqueue/index.js'
import { MockSplitQueue } from '../helpers/split-queue.js'

const SIZE = 16
const LAYOUT = [
  { gpa: 0, size: 0x20000 },
  { gpa: 0x20000, size: 0x10000 },
  { gpa: 0x40000, size: 0x20000 },
]
const OPTS = { size: SIZE, regions: LAYOUT, indirectTables: 4, memoryOptions: { windowStride: 4096, windowOverlap: 512 } }
const AREAS: [number, number][] = (() => {
  const out: [number, number][] = []
  for (const [s, e] of MockSplitQueue.create(OPTS).dataRanges) {
    const last = out[out.length - 1]
    if (last !== undefined && last[1] === s) last[1] = e
    else out.push([s, e])
  }
  return out
})()

type Range = [gpa: number, len: number, writable: boolean]
type Field = 'addr' | 'len' | 'flags' | 'next'
interface Corruption {
  where: 'direct' | 'indirect'
  chain: number
  index: number
  field: Field
  value: number
}

const u32 = fc.integer({ min: 0, max: 0xffffffff })
const valueOf: Record<Field, fc.Arbitrary<number>> = {
  addr: fc.oneof(
    fc.constantFrom(0, 0x1fff8, 0x20000 - 8, 0x30000 - 4, 0x30000, 0x40000, 0x5fff0, 0xc000, 2 ** 53, 2 ** 53 - 8, 2 ** 64 - 16),
    fc.integer({ min: 0, max: 0x70000 }),
    fc.tuple(u32, u32).map(([hi, lo]) => hi * 2 ** 32 + lo),
  ),
  len: fc.oneof(fc.constantFrom(0, 1, 16, 24, 32, 256, 272, 0x80000000, 0xffffffff), fc.integer({ min: 0, max: 0x30000 }), u32),
  flags: fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 0xffff })),
  next: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 0xffff })),
}
const corruption: fc.Arbitrary<Corruption> = fc
  .tuple(fc.constantFrom('direct' as const, 'indirect' as const), fc.nat(3), fc.nat(20), fc.constantFrom<Field>('addr', 'len', 'flags', 'next'))
  .chain(([where, chain, index, field]) => valueOf[field].map((value) => ({ where, chain, index, field, value })))

const segment = fc.record({ area: fc.nat(AREAS.length - 1), at: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.oneof(fc.nat(64), fc.nat(20000)) })
const chainSpec = fc.record({
  segs: fc.array(segment, { minLength: 1, maxLength: SIZE }),
  readable: fc.nat(SIZE),
  indirect: fc.boolean(),
})

function toSegments(spec: { segs: { area: number; at: number; len: number }[]; readable: number }): DriverSegment[] {
  return spec.segs.map((s, i) => {
    const [start, end] = AREAS[s.area]
    const len = Math.min(s.len, end - start)
    return { gpa: start + Math.floor(s.at * (end - start - len)), len, writable: i >= spec.readable }
  })
}

function normalise(list: readonly Range[]): Range[] {
  const out: Range[] = []
  for (const [gpa, len, w] of list) {
    if (len === 0) continue
    const last = out[out.length - 1]
    if (last !== undefined && last[2] === w && last[0] + last[1] === gpa) last[1] += len
    else out.push([gpa, len, w])
  }
  return out
}

/** Whether [addr, addr+len) is below 2^53 and every byte is in some region. */
function mapped(addr: bigint, len: number): boolean {
  if (addr + BigInt(len) > 2n ** 53n || addr >= 2n ** 53n) return false
  let cur = Number(addr)
  const end = cur + len
  while (cur < end) {
    const r = LAYOUT.find((x) => cur >= x.gpa && cur < x.gpa + x.size)
    if (r === undefined) return false
    cur = r.gpa + r.size
  }
  return true
}

/** The model: virtio 1.2 §2.7.5 read literally, in BigInt and region terms (no windows, no typed views). */
function modelWalk(mq: MockSplitQueue, head: number): Range[] | 'error' {
  const decode = (b: Uint8Array) => {
    const v = new DataView(b.buffer, b.byteOffset, 16)
    return {
      addr: v.getBigUint64(0, true),
      len: v.getUint32(8, true),
      flags: v.getUint16(12, true),
      next: v.getUint16(14, true),
    }
  }
  let read = (i: number) => decode(mq.read(mq.config.descGpa + 16 * i, 16))
  let entries = SIZE
  let inIndirect = false
  let idx = head
  let visited = 0
  let writableSeen = false
  let total = 0
  const out: Range[] = []
  for (;;) {
    if (++visited > entries) return 'error'
    const d = read(idx)
    if (d.flags & INDIRECT) {
      if (inIndirect || d.flags & NEXT || d.len === 0 || d.len % 16 !== 0 || d.len > Math.max(SIZE, MAX_INDIRECT_ENTRIES) * 16) return 'error'
      if (!mapped(d.addr, d.len)) return 'error'
      const table = mq.read(Number(d.addr), d.len)
      read = (i) => decode(table.subarray(16 * i))
      entries = d.len / 16
      inIndirect = true
      idx = 0
      visited = 0
      continue
    }
    const w = (d.flags & WRITE) !== 0
    if (!w && writableSeen) return 'error'
    writableSeen ||= w
    total += d.len
    if (total > 2 ** 32 || !mapped(d.addr, d.len)) return 'error'
    out.push([Number(d.addr), d.len, w])
    if (!(d.flags & NEXT)) return out
    if (d.next >= entries) return 'error'
    idx = d.next
  }
}

function corrupt(mq: MockSplitQueue, tables: (number | null)[], c: Corruption): void {
  let at: number
  if (c.where === 'direct') {
    at = mq.config.descGpa + 16 * (c.index % SIZE)
  } else {
    const table = tables[c.chain % tables.length]
    if (table === null) return
    at = table + 16 * (c.index % SIZE) // inside the pool slot of this chain
  }
  const bytes = new Uint8Array(8)
  const v = new DataView(bytes.buffer)
  switch (c.field) {
    case 'addr':
      v.setUint32(0, c.value % 2 ** 32, true)
      v.setUint32(4, Math.floor(c.value / 2 ** 32) % 2 ** 32, true)
      mq.write(at, bytes)
      return
    case 'len':
      v.setUint32(0, c.value, true)
      mq.write(at + 8, bytes.subarray(0, 4))
      return
    case 'flags':
      v.setUint16(0, c.value, true)
      mq.write(at + 12, bytes.subarray(0, 2))
      return
    case 'next':
      v.setUint16(0, c.value, true)
      mq.write(at + 14, bytes.subarray(0, 2))
  }
}

describe('descriptor walker under corruption', () => {
  it('returns the model chain or an error, never memory outside the regions', () => {
    const codes = new Set<number>(Object.values(ChainError))
    const seen = new Map<number, number>()
    fc.assert(
      fc.property(fc.array(chainSpec, { minLength: 1, maxLength: 4 }), fc.array(corruption, { maxLength: 4 }), (specs, corruptions) => {
        const mq = MockSplitQueue.create(OPTS)
        const mem = mq.memory
        const chains: { head: number; segs: DriverSegment[] }[] = []
        for (const spec of specs) {
          const segs = toSegments(spec)
          const head = mq.driver.addChain(segs, spec.indirect)
          if (head >= 0) chains.push({ head, segs })
        }
        mq.driver.publishAvail()
        const tables = chains.map(({ head }) => {
          const d = new DataView(mq.read(mq.config.descGpa + 16 * head, 16).buffer)
          return d.getUint16(12, true) & INDIRECT ? Number(d.getBigUint64(0, true)) : null
        })
        for (const c of corruptions) corrupt(mq, tables, c)

        const dev = mq.createDevice()
        const out = new DescChain(2048)
        for (const { head, segs } of chains) {
          expect(dev.popAvail()).toBe(head)
          const code = dev.walk(head, out)
          seen.set(code, (seen.get(code) ?? 0) + 1)
          expect(codes.has(code)).toBe(true)
          const got: Range[] = []
          for (let i = 0; i < out.count; i++) {
            const w = mem.windows[out.window[i]]
            expect(out.length[i]).toBeGreaterThan(0)
            expect(out.offset[i] + out.length[i]).toBeLessThanOrEqual(w.size)
            expect(mapped(BigInt(w.gpa + out.offset[i]), out.length[i])).toBe(true)
            got.push([w.gpa + out.offset[i], out.length[i], i >= out.readableCount])
          }
          const model = modelWalk(mq, head)
          expect(code === ChainError.OK).toBe(model !== 'error')
          if (code !== ChainError.OK) continue
          expect(normalise(got)).toEqual(normalise(model as Range[]))
          const sum = (w: boolean) => got.filter((r) => r[2] === w).reduce((a, r) => a + r[1], 0)
          expect([out.readableBytes, out.writableBytes]).toEqual([sum(false), sum(true)])
          if (corruptions.length === 0) expect(normalise(got)).toEqual(normalise(segs.map((s) => [s.gpa, s.len, s.writable])))
        }
      }),
      { numRuns: 400 },
    )
    // The generators must reach the interesting outcomes, or the property says little.
    for (const code of [ChainError.OK, ChainError.OUT_OF_RANGE, ChainError.BAD_NEXT, ChainError.BAD_INDIRECT]) {
      expect(seen.get(code) ?? 0).toBeGreaterThan(0)
    }
  }, 60_000)
})
