import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { DescChain, GuestMemory, VirtqueueError, type RegionSpec } from '../../src/virtqueue/index.js'
import { MockGuestMemory } from '../helpers/guest-memory.js'

const TINY = { windowStride: 4096, windowOverlap: 512 }

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(VirtqueueError)
    return (err as VirtqueueError).code
  }
  return undefined
}

const region = (gpa: number, size: number, uva = 0x1000_0000 + gpa): RegionSpec => ({ gpa, size, uva, mmapOffset: 0 })
const fakeMap = (_r: RegionSpec, _i: number, _off: number, len: number): Uint8Array => new Uint8Array(len)

/** Segments of `chain` as guest-physical ranges. */
function ranges(mem: GuestMemory, chain: DescChain, from = 0): [number, number][] {
  const out: [number, number][] = []
  for (let i = from; i < chain.count; i++) out.push([mem.windows[chain.window[i]].gpa + chain.offset[i], chain.length[i]])
  return out
}

describe('GuestMemory.create validation', () => {
  it('rejects malformed regions with EVQ_BAD_REGION', () => {
    expect(codeOf(() => GuestMemory.create([region(0, 0)], fakeMap))).toBe('EVQ_BAD_REGION')
    expect(codeOf(() => GuestMemory.create([region(-4096, 4096)], fakeMap))).toBe('EVQ_BAD_REGION')
    expect(codeOf(() => GuestMemory.create([region(0.5, 4096)], fakeMap))).toBe('EVQ_BAD_REGION')
    expect(codeOf(() => GuestMemory.create([{ ...region(0, 4096), mmapOffset: -1 }], fakeMap))).toBe('EVQ_BAD_REGION')
    expect(codeOf(() => GuestMemory.create([region(0, Number.NaN)], fakeMap))).toBe('EVQ_BAD_REGION')
  })

  it('rejects regions ending beyond 2^53 (gpa or uva), exactly at 2^53 is fine', () => {
    const top = 2 ** 53 - 4096
    expect(codeOf(() => GuestMemory.create([region(top, 8192)], fakeMap))).toBe('EVQ_BAD_REGION')
    expect(codeOf(() => GuestMemory.create([region(0, 8192, top)], fakeMap))).toBe('EVQ_BAD_REGION')
    // 2^53 - 1 + 2 would round to 2^53 if computed as a sum: the check must not be fooled.
    expect(codeOf(() => GuestMemory.create([region(2 ** 53 - 1, 2)], fakeMap))).toBe('EVQ_BAD_REGION')
    const mem = GuestMemory.create([region(top, 4096, 0)], fakeMap)
    expect(mem.findWindow(top, 4096)).toBe(0)
    expect(mem.findWindow(top + 4095, 2)).toBe(-1)
  })

  it('rejects overlapping regions in GPA or UVA space, accepts adjacent ones', () => {
    expect(codeOf(() => GuestMemory.create([region(0, 8192), region(4096, 8192)], fakeMap))).toBe('EVQ_REGION_OVERLAP')
    expect(codeOf(() => GuestMemory.create([region(0x10000, 0x100), region(0, 0x100000)], fakeMap))).toBe(
      'EVQ_REGION_OVERLAP',
    )
    expect(codeOf(() => GuestMemory.create([region(0, 4096, 0), region(8192, 4096, 2048)], fakeMap))).toBe(
      'EVQ_REGION_OVERLAP',
    )
    const mem = GuestMemory.create([region(4096, 4096, 0), region(0, 4096, 4096)], fakeMap)
    expect(mem.regions.map((r) => r.gpa)).toEqual([4096, 0]) // frontend order is kept
    expect(mem.windows.map((w) => w.gpa)).toEqual([0, 4096]) // windows are sorted
    expect(mem.windows.map((w) => w.regionIndex)).toEqual([1, 0])
  })

  it('rejects bad window options with EVQ_BAD_OPTIONS', () => {
    expect(codeOf(() => GuestMemory.create([], fakeMap, { windowStride: 0 }))).toBe('EVQ_BAD_OPTIONS')
    expect(codeOf(() => GuestMemory.create([], fakeMap, { windowOverlap: -1 }))).toBe('EVQ_BAD_OPTIONS')
    expect(codeOf(() => GuestMemory.create([], fakeMap, { windowStride: 2 ** 32, windowOverlap: 0 }))).toBe(
      'EVQ_BAD_OPTIONS',
    )
  })

  it('rejects a mapping of the wrong length and releases the windows already mapped', () => {
    const released: number[] = []
    let calls = 0
    const code = codeOf(() =>
      GuestMemory.create(
        [region(0, 16384)],
        (_r, _i, _off, len) => new Uint8Array(++calls === 3 ? len - 1 : len),
        { ...TINY, unmapWindow: (b) => released.push(b.length) },
      ),
    )
    expect(code).toBe('EVQ_BAD_MAPPING')
    expect(released).toEqual([4608, 4608, 4607])
  })

  it('accepts an empty table, in which nothing is mapped', () => {
    const mem = GuestMemory.create([], fakeMap)
    expect(mem.windows).toHaveLength(0)
    expect(mem.findWindow(0, 1)).toBe(-1)
    expect(mem.translate(0, 1, false, new DescChain(4))).toBe(false)
  })
})

describe('GuestMemory windows', () => {
  it('cuts a region into overlapping windows capped at the region end', () => {
    const calls: [number, number][] = []
    const mem = GuestMemory.create(
      [region(0x100000, 10000)],
      (_r, _i, off, len) => {
        calls.push([off, len])
        return new Uint8Array(len)
      },
      TINY,
    )
    expect(calls).toEqual([
      [0, 4608],
      [4096, 4608],
      [8192, 1808],
    ])
    expect(mem.windows.map((w) => [w.gpa, w.size, w.offsetInRegion])).toEqual([
      [0x100000, 4608, 0],
      [0x101000, 4608, 4096],
      [0x102000, 1808, 8192],
    ])
    // A region that the first window's overlap already covers gets one window.
    expect(GuestMemory.create([region(0, 4096 + 100)], fakeMap, TINY).windows).toHaveLength(1)
  })

  it('finds a window for every area of at most windowOverlap bytes inside a region', () => {
    const mem = MockGuestMemory.create([{ gpa: 0x3000, size: 30000 }], TINY).memory
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30000 }), fc.integer({ min: 0, max: 512 }), (off, len) => {
        fc.pre(off + len <= 30000 && (len > 0 || off < 30000))
        const w = mem.findWindow(0x3000 + off, len)
        expect(w).toBeGreaterThanOrEqual(0)
        const win = mem.windows[w]
        expect(win.gpa).toBeLessThanOrEqual(0x3000 + off)
        expect(0x3000 + off + len).toBeLessThanOrEqual(win.gpa + win.size)
      }),
    )
  })

  it('returns -1 for unmapped, straddling, overflowing and malformed lookups', () => {
    const mem = MockGuestMemory.create(
      [
        { gpa: 0, size: 8192 },
        { gpa: 16384, size: 8192 },
      ],
      TINY,
    ).memory
    expect(mem.findWindow(8192, 1)).toBe(-1) // gap
    expect(mem.findWindow(8000, 400)).toBe(-1) // runs into the gap
    expect(mem.findWindow(8192, 0)).toBe(-1) // len 0 past the end
    expect(mem.findWindow(8191, 0)).toBe(1)
    expect(mem.findWindow(100, 5000)).toBe(-1) // longer than one window
    expect(mem.findWindow(2 ** 53, 0)).toBe(-1)
    expect(mem.findWindow(2 ** 53 - 1, 2)).toBe(-1)
    expect(mem.findWindow(-1, 1)).toBe(-1)
    expect(mem.findWindow(Number.NaN, 1)).toBe(-1)
    expect(mem.findWindow(0, Number.NaN)).toBe(-1)
    expect(mem.findWindow(16384 + 8191, 1)).toBeGreaterThan(0)
  })

  it('exposes windows whose bytes, view and u16/u32 views alias the backing memory', () => {
    const guest = MockGuestMemory.create([{ gpa: 0x10000, size: 8192 }], TINY)
    guest.write(0x11000 + 8, new Uint8Array([0x34, 0x12, 0x78, 0x56]))
    const w = guest.memory.windows[guest.memory.findWindow(0x11008, 4)]
    const off = 0x11008 - w.gpa
    expect(w.bytes[off]).toBe(0x34)
    expect(w.view.getUint16(off, true)).toBe(0x1234)
    expect(w.u16[off / 2]).toBe(0x1234)
    expect(w.u32[off / 4]).toBe(0x56781234)
  })
})

describe('GuestMemory.translate', () => {
  const layout = [
    { gpa: 0, size: 12288 },
    { gpa: 12288, size: 4096 }, // adjacent to the first
    { gpa: 32768, size: 8192 }, // after a gap
  ]

  it('splits a range at window and adjacent-region boundaries, covering it exactly', () => {
    const guest = MockGuestMemory.create(layout, TINY)
    const mem = guest.memory
    const chain = new DescChain(16)
    expect(mem.translate(1000, 14000, false, chain)).toBe(true)
    const got = ranges(mem, chain)
    expect(got.length).toBeGreaterThan(3)
    let at = 1000
    for (const [gpa, len] of got) {
      expect(gpa).toBe(at)
      expect(len).toBeGreaterThan(0)
      at += len
    }
    expect(at).toBe(15000)
    expect(chain.readableCount).toBe(got.length)
    expect(chain.readableBytes).toBe(14000)
    // The segments alias guest bytes: write a pattern through the guest, read it through the segments.
    const pattern = Uint8Array.from({ length: 14000 }, (_, i) => (i * 7 + 3) & 0xff)
    guest.write(1000, pattern)
    const seen: number[] = []
    for (let i = 0; i < chain.count; i++) {
      const w = mem.windows[chain.window[i]]
      seen.push(...w.bytes.subarray(chain.offset[i], chain.offset[i] + chain.length[i]))
    }
    expect(Uint8Array.from(seen)).toEqual(pattern)
  })

  it('agrees with a brute-force model on random ranges, and leaves the chain unchanged on failure', () => {
    const mem = MockGuestMemory.create(layout, TINY).memory
    const mapped = (g: number): boolean => layout.some((r) => g >= r.gpa && g < r.gpa + r.size)
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 45000 }),
        fc.integer({ min: 0, max: 20000 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 8 }),
        (gpa, len, writable, capacity) => {
          const chain = new DescChain(capacity)
          chain.reset(0)
          const ok = mem.translate(gpa, len, writable, chain)
          let allMapped = true
          for (let g = gpa; g < gpa + len && allMapped; g += 64) allMapped = mapped(g)
          if (len > 0) allMapped &&= mapped(gpa + len - 1)
          if (!allMapped) expect(ok).toBe(false)
          if (!ok) {
            expect([chain.count, chain.readableCount, chain.readableBytes, chain.writableBytes]).toEqual([0, 0, 0, 0])
            // Failure with every byte mapped can only mean the chain was full.
            if (allMapped) expect(mem.contains(gpa, len)).toBe(true)
            return
          }
          let at = gpa
          for (const [g, l] of ranges(mem, chain)) {
            expect(g).toBe(at)
            at += l
          }
          expect(at).toBe(gpa + len)
          expect(writable ? chain.writableBytes : chain.readableBytes).toBe(len)
        },
      ),
      { numRuns: 500 },
    )
  })

  it('rejects unmapped, overflowing and gap-crossing ranges without appending', () => {
    const mem = MockGuestMemory.create(layout, TINY).memory
    const chain = new DescChain(32)
    expect(mem.translate(0, 100, false, chain)).toBe(true)
    const before = [chain.count, chain.readableBytes]
    expect(mem.translate(16000, 1000, false, chain)).toBe(false) // runs from region 2 into the gap
    expect(mem.translate(20000, 1, false, chain)).toBe(false) // in the gap
    expect(mem.translate(32768 + 8000, 193, false, chain)).toBe(false) // past the last region
    expect(mem.translate(2 ** 53 - 10, 20, false, chain)).toBe(false) // overflows 2^53
    expect(mem.translate(2 ** 64, 1, false, chain)).toBe(false)
    expect([chain.count, chain.readableBytes]).toEqual(before)
  })

  it('keeps readables before writables and accounts bytes per direction', () => {
    const mem = MockGuestMemory.create(layout, TINY).memory
    const chain = new DescChain(8)
    expect(mem.translate(0, 16, false, chain)).toBe(true)
    expect(mem.translate(4000, 1200, true, chain)).toBe(true) // crosses a window end: two segments
    expect(mem.translate(64, 1, false, chain)).toBe(false) // readable after writable
    expect(mem.translate(500, 0, true, chain)).toBe(true) // zero length adds nothing
    expect([chain.count, chain.readableCount, chain.readableBytes, chain.writableBytes]).toEqual([3, 1, 16, 1200])
  })

  it('fails, unchanged, when the chain is full', () => {
    const mem = MockGuestMemory.create(layout, TINY).memory
    const chain = new DescChain(2)
    expect(mem.translate(0, 10000, true, chain)).toBe(false) // needs 3 segments
    expect(chain.count).toBe(0)
    expect(mem.translate(0, 8000, true, chain)).toBe(true)
    expect(chain.count).toBe(2)
  })
})

describe('GuestMemory copies, UVA translation, dispose', () => {
  it('reads and writes across regions, refusing unmapped ranges without partial effects', () => {
    const guest = MockGuestMemory.create(
      [
        { gpa: 0, size: 4096 },
        { gpa: 4096, size: 4096 },
        { gpa: 12288, size: 4096 },
      ],
      TINY,
    )
    const mem = guest.memory
    const data = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff)
    expect(mem.write(4000, data)).toBe(true)
    expect(new Uint8Array(guest.buffers[0], 4000, 96)).toEqual(data.subarray(0, 96))
    expect(new Uint8Array(guest.buffers[1], 0, 204)).toEqual(data.subarray(96))
    const back = new Uint8Array(300)
    expect(mem.read(4000, back)).toBe(true)
    expect(back).toEqual(data)
    expect(mem.write(8000, data)).toBe(false)
    expect(new Uint8Array(guest.buffers[1], 8000 - 4096, 96).every((b) => b === 0)).toBe(true)
    expect(mem.read(8190, new Uint8Array(10))).toBe(false)
    expect(codeOf(() => mem.read(0, new Uint8Array(4), 2, 4))).toBe('EVQ_BAD_ARGUMENT')
  })

  it('translates frontend virtual addresses to guest physical ones', () => {
    const mem = GuestMemory.create([region(0, 4096, 0x7000_0000), region(0x10000, 8192, 0x5000_0000)], fakeMap)
    expect(mem.uvaToGpa(0x7000_0000)).toBe(0)
    expect(mem.uvaToGpa(0x7000_0fff)).toBe(0xfff)
    expect(mem.uvaToGpa(0x7000_1000)).toBe(-1)
    expect(mem.uvaToGpa(0x5000_1234)).toBe(0x11234)
    expect(mem.uvaToGpa(0x4fff_ffff)).toBe(-1)
  })

  it('unmaps every window once and finds nothing afterwards', () => {
    const guest = MockGuestMemory.create([{ gpa: 0, size: 10000 }, { gpa: 65536, size: 4096 }], TINY)
    expect(guest.stats.mapped).toBe(4)
    guest.dispose()
    expect(guest.stats.unmapped).toBe(4)
    expect(guest.memory.windows).toHaveLength(0)
    expect(guest.memory.findWindow(0, 1)).toBe(-1)
    expect(guest.memory.translate(0, 1, false, new DescChain(1))).toBe(false)
    guest.dispose()
    expect(guest.stats.unmapped).toBe(4)
  })

  it('works over SharedArrayBuffer-backed windows', () => {
    const guest = MockGuestMemory.create([{ gpa: 0, size: 8192 }], { ...TINY, shared: true })
    expect(guest.memory.windows[0].bytes.buffer).toBeInstanceOf(SharedArrayBuffer)
    guest.write(4090, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))
    expect(guest.read(4090, 8)).toEqual(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))
  })

  it('rejects a DescChain without capacity', () => {
    expect(codeOf(() => new DescChain(0))).toBe('EVQ_BAD_ARGUMENT')
  })
})
