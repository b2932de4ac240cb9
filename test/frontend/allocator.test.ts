import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { RangeAllocator } from '../../src/frontend/allocator.js'

describe('RangeAllocator', () => {
  it('hands out aligned, disjoint ranges inside one range each, and gets everything back', () => {
    const ranges = [{ start: 0, size: 1 << 16 }, { start: 1 << 20, size: 1 << 15 }, { start: 3 << 20, size: 4096 }]
    const total = ranges.reduce((n, r) => n + r.size, 0)
    const op = fc.oneof(
      fc.record({ kind: fc.constant('alloc' as const), len: fc.integer({ min: 1, max: 20000 }), alignLog: fc.integer({ min: 0, max: 12 }) }),
      fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
    )
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const a = new RangeAllocator(ranges)
      const live: { start: number; len: number }[] = []
      for (const o of ops) {
        if (o.kind === 'alloc') {
          const align = 1 << o.alignLog
          const start = a.alloc(o.len, align)
          if (start < 0) continue
          expect(start % align).toBe(0)
          expect(ranges.some((r) => start >= r.start && start + o.len <= r.start + r.size)).toBe(true)
          for (const l of live) expect(start + o.len <= l.start || l.start + l.len <= start).toBe(true)
          live.push({ start, len: o.len })
        } else if (live.length > 0) {
          const [l] = live.splice(o.pick % live.length, 1)
          a.release(l.start, l.len)
        }
        expect(a.freeBytes + live.reduce((n, l) => n + l.len, 0)).toBe(total)
      }
      for (const l of live) a.release(l.start, l.len)
      expect(a.freeBytes).toBe(total)
      // Fully coalesced again: each whole range can be allocated in one piece.
      for (const r of ranges) expect(a.alloc(r.size, 1)).toBeGreaterThanOrEqual(0)
    }))
  })

  it('reports exhaustion with -1 and never crosses a range boundary', () => {
    const a = new RangeAllocator([{ start: 0, size: 4096 }, { start: 8192, size: 4096 }])
    expect(a.maxAllocation).toBe(4096)
    expect(a.alloc(4097, 1)).toBe(-1)
    expect(a.alloc(3000, 1)).toBe(0)
    expect(a.alloc(3000, 1)).toBe(8192)
    expect(a.alloc(3000, 1)).toBe(-1)
  })

  it('rejects releasing what was never allocated', () => {
    const a = new RangeAllocator([{ start: 0, size: 4096 }])
    const s = a.alloc(100, 64)
    expect(() => a.release(s, 100)).not.toThrow()
    expect(() => a.release(s, 100)).toThrow(RangeError)
    expect(() => a.release(10_000, 10)).toThrow(RangeError)
  })
})
