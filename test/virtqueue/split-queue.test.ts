import { describe, it, expect } from 'vitest'
import {
  ChainError,
  DescChain,
  MAX_INDIRECT_ENTRIES,
  SplitQueue,
  SplitQueueDriver,
  VIRTQ_DESC_F_INDIRECT as INDIRECT,
  VIRTQ_DESC_F_NEXT as NEXT,
  VIRTQ_DESC_F_WRITE as WRITE,
  VirtqueueError,
  vringNeedEvent,
  writeDescriptor,
  type GuestMemory,
} from '../../src/virtqueue/index.js'
import { MockGuestMemory } from '../helpers/guest-memory.js'
import { MockSplitQueue } from '../helpers/split-queue.js'

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(VirtqueueError)
    return (err as VirtqueueError).code
  }
  return undefined
}

/** Three regions: two guest-physically adjacent ones, then one after a gap. */
const LAYOUT = [
  { gpa: 0, size: 0x10000 },
  { gpa: 0x10000, size: 0x10000 },
  { gpa: 0x40000, size: 0x10000 },
]
const BUF = 0x8000 // a buffer address in region 0, past the rings
const TABLE = 0xc000 // where hostile tests put indirect tables

function setup(opts: { size?: number; eventIdx?: boolean; base?: number; capacity?: number } = {}) {
  const mq = MockSplitQueue.create({ size: opts.size ?? 16, eventIdx: opts.eventIdx, base: opts.base, regions: LAYOUT })
  const dev = mq.createDevice()
  const chain = new DescChain(opts.capacity ?? 64)
  return { mq, drv: mq.driver, dev, chain }
}

/** Makes raw head `head` available and pops it on the device side. */
function offer(t: ReturnType<typeof setup>, head: number): void {
  t.drv.pushAvailRaw(head)
  t.drv.publishAvail()
  expect(t.dev.popAvail()).toBe(head)
}

/** Encodes a descriptor table. */
function table(descs: readonly [addr: number, len: number, flags: number, next: number][]): Uint8Array {
  const bytes = new Uint8Array(descs.length * 16)
  const view = new DataView(bytes.buffer)
  descs.forEach(([a, l, f, n], i) => writeDescriptor(view, i * 16, a, l, f, n))
  return bytes
}

/** Segments as [gpa, len] pairs. */
function ranges(mem: GuestMemory, chain: DescChain): [number, number][] {
  const out: [number, number][] = []
  for (let i = 0; i < chain.count; i++) out.push([mem.windows[chain.window[i]].gpa + chain.offset[i], chain.length[i]])
  return out
}

describe('SplitQueue construction', () => {
  const mem = MockGuestMemory.create(LAYOUT).memory
  const ok = { size: 16, descGpa: 0x1000, availGpa: 0x2000, usedGpa: 0x3000, eventIdx: false }

  it('rejects bad sizes and misaligned areas with EVQ_BAD_RING', () => {
    for (const size of [0, 3, 48, 65536, -16, 1.5]) {
      expect(codeOf(() => new SplitQueue(mem, { ...ok, size }))).toBe('EVQ_BAD_RING')
    }
    expect(codeOf(() => new SplitQueue(mem, { ...ok, descGpa: 0x1008 }))).toBe('EVQ_BAD_RING')
    expect(codeOf(() => new SplitQueue(mem, { ...ok, availGpa: 0x2001 }))).toBe('EVQ_BAD_RING')
    expect(codeOf(() => new SplitQueue(mem, { ...ok, usedGpa: 0x3002 }))).toBe('EVQ_BAD_RING')
  })

  it('accepts 1 and 32768 and the minimum alignments', () => {
    const big = MockGuestMemory.create(1 << 20).memory
    expect(new SplitQueue(big, { size: 32768, descGpa: 0, availGpa: 0x80002, usedGpa: 0x90004, eventIdx: true }).size).toBe(
      32768,
    )
    expect(new SplitQueue(mem, { ...ok, size: 1, descGpa: 0x10, availGpa: 0x22, usedGpa: 0x34 }).size).toBe(1)
  })

  it('rejects areas outside memory, in a gap, or straddling a region boundary', () => {
    expect(codeOf(() => new SplitQueue(mem, { ...ok, descGpa: 0x20000 }))).toBe('EVQ_RING_OUTSIDE_MEMORY')
    expect(codeOf(() => new SplitQueue(mem, { ...ok, usedGpa: 0x4fff0 }))).toBe('EVQ_RING_OUTSIDE_MEMORY')
    // Adjacent regions are contiguous for data, but a ring area needs one typed-array view.
    expect(codeOf(() => new SplitQueue(mem, { ...ok, descGpa: 0x10000 - 0x80 }))).toBe('EVQ_RING_OUTSIDE_MEMORY')
    expect(codeOf(() => new SplitQueue(mem, { ...ok, availGpa: 2 ** 60 }))).toBe('EVQ_BAD_RING')
  })
})

describe('SplitQueue data path', () => {
  it('pops, walks, pushes and publishes a chain the driver reaps', () => {
    const t = setup()
    const added = t.mq.addChain([{ data: new Uint8Array(16).fill(7) }, { len: 512, writable: true }, { len: 1, writable: true }])
    expect(t.dev.pending()).toBe(1)
    const head = t.dev.popAvail()
    expect(head).toBe(added.head)
    expect(t.dev.popAvail()).toBe(-1)
    expect(t.dev.walk(head, t.chain)).toBe(ChainError.OK)
    expect(ranges(t.mq.memory, t.chain)).toEqual(added.segments.map((s) => [s.gpa, s.len]))
    expect([t.chain.head, t.chain.readableCount, t.chain.readableBytes, t.chain.writableBytes]).toEqual([head, 1, 16, 513])
    t.dev.pushUsed(head, 513)
    expect(t.mq.reap()).toBeNull() // not visible before publishUsed
    t.dev.publishUsed()
    expect(t.mq.usedIdx).toBe(1)
    expect(t.mq.reap()).toEqual({ id: head, len: 513 })
    expect(t.drv.numFree()).toBe(16)
  })

  it('gives a head back with undoPop and counts pending heads', () => {
    const t = setup()
    const a = t.mq.addChain([{ len: 8 }]).head
    const b = t.mq.addChain([{ len: 8 }]).head
    expect(t.dev.isEmpty()).toBe(false)
    expect(t.dev.pending()).toBe(2)
    expect(t.dev.popAvail()).toBe(a)
    t.dev.undoPop()
    expect(t.dev.popAvail()).toBe(a)
    expect(t.dev.popAvail()).toBe(b)
    expect(t.dev.isEmpty()).toBe(true)
    expect(t.dev.nextAvail).toBe(2)
  })

  it('re-reads avail.idx after nextAvail is set (SET_VRING_BASE)', () => {
    const t = setup()
    t.mq.addChain([{ len: 8 }])
    t.mq.addChain([{ len: 8 }])
    expect(t.dev.popAvail()).toBeGreaterThanOrEqual(0)
    t.dev.nextAvail = 0
    expect(t.dev.pending()).toBe(2)
    t.dev.nextAvail = 2
    expect(t.dev.popAvail()).toBe(-1)
    t.mq.addChain([{ len: 8 }])
    expect(t.dev.popAvail()).toBeGreaterThanOrEqual(0)
  })

  it('walks direct descriptors followed by an indirect one (virtio 1.2 §2.7.5.3.2), ignoring WRITE on it', () => {
    const t = setup()
    t.mq.write(TABLE, table([[BUF + 100, 50, NEXT, 1], [BUF + 200, 60, WRITE, 0]]))
    t.drv.writeDescriptor(3, BUF, 16, NEXT, 5)
    t.drv.writeDescriptor(5, TABLE, 32, INDIRECT | WRITE, 0)
    offer(t, 3)
    expect(t.dev.walk(3, t.chain)).toBe(ChainError.OK)
    expect(ranges(t.mq.memory, t.chain)).toEqual([
      [BUF, 16],
      [BUF + 100, 50],
      [BUF + 200, 60],
    ])
    expect(t.chain.readableCount).toBe(2)
  })

  it('walks buffers and indirect tables that run into a guest-physically adjacent region', () => {
    const t = setup()
    const tableGpa = 0x10000 - 16 // the table's second entry is in region 1
    t.mq.write(tableGpa, table([[0x10000 - 100, 300, NEXT, 1], [0x20000 - 8, 8, WRITE, 0]]))
    t.drv.writeDescriptor(0, tableGpa, 32, INDIRECT, 0)
    offer(t, 0)
    expect(t.dev.walk(0, t.chain)).toBe(ChainError.OK)
    expect(ranges(t.mq.memory, t.chain)).toEqual([
      [0x10000 - 100, 100],
      [0x10000, 200],
      [0x20000 - 8, 8],
    ])
  })

  it('accepts zero-length descriptors without adding segments', () => {
    const t = setup()
    t.drv.writeDescriptor(0, BUF, 0, NEXT, 1)
    t.drv.writeDescriptor(1, BUF, 4, WRITE | NEXT, 2)
    t.drv.writeDescriptor(2, 0x3_0000, 0, WRITE, 0) // in the gap, but no byte is touched
    offer(t, 0)
    expect(t.dev.walk(0, t.chain)).toBe(ChainError.OK)
    expect(ranges(t.mq.memory, t.chain)).toEqual([[BUF, 4]])
  })
})

describe('SplitQueue hostile descriptor tables', () => {
  const cases: [string, number, (t: ReturnType<typeof setup>) => void][] = [
    ['a loop a→b→a', ChainError.LOOP, (t) => {
      t.drv.writeDescriptor(0, BUF, 16, NEXT, 1)
      t.drv.writeDescriptor(1, BUF, 16, NEXT, 0)
    }],
    ['a self loop', ChainError.LOOP, (t) => t.drv.writeDescriptor(0, BUF, 16, NEXT, 0)],
    ['a loop inside an indirect table', ChainError.LOOP, (t) => {
      t.mq.write(TABLE, table([[BUF, 8, NEXT, 1], [BUF, 8, NEXT, 0]]))
      t.drv.writeDescriptor(0, TABLE, 32, INDIRECT, 0)
    }],
    ['next out of range', ChainError.BAD_NEXT, (t) => t.drv.writeDescriptor(0, BUF, 16, NEXT, 16)],
    ['next outside the indirect table', ChainError.BAD_NEXT, (t) => {
      t.mq.write(TABLE, table([[BUF, 8, NEXT, 2], [BUF, 8, 0, 0], [BUF, 8, 0, 0]]))
      t.drv.writeDescriptor(0, TABLE, 32, INDIRECT, 0) // two entries: next 2 is outside
    }],
    ['a buffer in a gap', ChainError.OUT_OF_RANGE, (t) => t.drv.writeDescriptor(0, 0x30000, 16, 0, 0)],
    ['a buffer past the end of memory', ChainError.OUT_OF_RANGE, (t) => t.drv.writeDescriptor(0, 0x1_0000_0000, 1, 0, 0)],
    ['an address at 2^53, even with length 0', ChainError.OUT_OF_RANGE, (t) => t.drv.writeDescriptor(0, 2 ** 53, 0, 0, 0)],
    ['an address of 2^64 - 4096', ChainError.OUT_OF_RANGE, (t) => t.drv.writeDescriptor(0, 2 ** 64 - 4096, 1, 0, 0)],
    ['a length running past a region end into a gap', ChainError.OUT_OF_RANGE, (t) =>
      t.drv.writeDescriptor(0, 0x20000 - 16, 17, WRITE, 0)],
    ['a length running past the last region', ChainError.OUT_OF_RANGE, (t) =>
      t.drv.writeDescriptor(0, 0x4ff00, 0xffffffff, WRITE, 0)],
    ['a zero-length indirect table', ChainError.BAD_INDIRECT, (t) => t.drv.writeDescriptor(0, TABLE, 0, INDIRECT, 0)],
    ['an indirect table length not a multiple of 16', ChainError.BAD_INDIRECT, (t) =>
      t.drv.writeDescriptor(0, TABLE, 24, INDIRECT, 0)],
    ['an indirect table of more than MAX_INDIRECT_ENTRIES entries', ChainError.BAD_INDIRECT, (t) =>
      t.drv.writeDescriptor(0, TABLE, (MAX_INDIRECT_ENTRIES + 1) * 16, INDIRECT, 0)],
    ['INDIRECT together with NEXT', ChainError.BAD_INDIRECT, (t) => {
      t.mq.write(TABLE, table([[BUF, 8, 0, 0]]))
      t.drv.writeDescriptor(0, TABLE, 16, INDIRECT | NEXT, 1)
      t.drv.writeDescriptor(1, BUF, 8, 0, 0)
    }],
    ['an indirect table outside memory', ChainError.OUT_OF_RANGE, (t) =>
      t.drv.writeDescriptor(0, 0x3_0000, 32, INDIRECT, 0)],
    ['an indirect table running into a gap', ChainError.OUT_OF_RANGE, (t) =>
      t.drv.writeDescriptor(0, 0x20000 - 16, 32, INDIRECT, 0)],
    ['nested indirect', ChainError.NESTED_INDIRECT, (t) => {
      t.mq.write(TABLE, table([[BUF, 8, NEXT, 1], [TABLE + 0x100, 16, INDIRECT, 0]]))
      t.mq.write(TABLE + 0x100, table([[BUF, 8, 0, 0]]))
      t.drv.writeDescriptor(0, TABLE, 32, INDIRECT, 0)
    }],
    ['a readable after a writable', ChainError.READ_AFTER_WRITE, (t) => {
      t.drv.writeDescriptor(0, BUF, 8, WRITE | NEXT, 1)
      t.drv.writeDescriptor(1, BUF, 8, 0, 0)
    }],
    ['a readable in the table after a writable direct one', ChainError.READ_AFTER_WRITE, (t) => {
      t.mq.write(TABLE, table([[BUF, 8, 0, 0]]))
      t.drv.writeDescriptor(0, BUF, 8, WRITE | NEXT, 1)
      t.drv.writeDescriptor(1, TABLE, 16, INDIRECT, 0)
    }],
    ['a readable after a zero-length writable', ChainError.READ_AFTER_WRITE, (t) => {
      t.drv.writeDescriptor(0, BUF, 0, WRITE | NEXT, 1)
      t.drv.writeDescriptor(1, BUF, 8, 0, 0)
    }],
  ]
  for (const [name, code, build] of cases) {
    it(`returns ${Object.entries(ChainError).find(([, v]) => v === code)?.[0]} for ${name}`, () => {
      const t = setup()
      build(t)
      offer(t, 0)
      expect(t.dev.walk(0, t.chain)).toBe(code)
      expect(t.dev.broken).toBe(false) // the caller decides what a bad chain costs
    })
  }

  it('accepts a loop-free chain that uses every descriptor, in the table and in an indirect table', () => {
    const t = setup()
    for (let i = 0; i < 16; i++) t.drv.writeDescriptor(i, BUF + i, 1, i < 15 ? NEXT : 0, i + 1)
    offer(t, 0)
    expect(t.dev.walk(0, t.chain)).toBe(ChainError.OK)
    expect(t.chain.readableBytes).toBe(16)
    t.mq.write(TABLE, table(Array.from({ length: 16 }, (_, i) => [BUF, 2, i < 15 ? NEXT : 0, i + 1] as const)))
    t.drv.writeDescriptor(1, TABLE, 256, INDIRECT, 0)
    offer(t, 1)
    expect(t.dev.walk(1, t.chain)).toBe(ChainError.OK)
    expect(t.chain.readableBytes).toBe(32)
  })

  it('returns BAD_NEXT for a head outside the queue', () => {
    const t = setup()
    expect(t.dev.walk(16, t.chain)).toBe(ChainError.BAD_NEXT)
    expect(t.dev.walk(-1, t.chain)).toBe(ChainError.BAD_NEXT)
  })

  it('returns TOO_MANY_SEGMENTS when the chain capacity is exceeded, also by window splits', () => {
    const t = setup({ capacity: 2 })
    t.drv.writeDescriptor(0, BUF, 8, NEXT, 1)
    t.drv.writeDescriptor(1, BUF, 8, NEXT, 2)
    t.drv.writeDescriptor(2, BUF, 8, 0, 0)
    offer(t, 0)
    expect(t.dev.walk(0, t.chain)).toBe(ChainError.TOO_MANY_SEGMENTS)
    const one = new DescChain(1)
    t.drv.writeDescriptor(3, 0x10000 - 8, 16, 0, 0) // one descriptor, two regions
    offer(t, 3)
    expect(t.dev.walk(3, one)).toBe(ChainError.TOO_MANY_SEGMENTS)
  })

  it('returns TOO_LARGE past 2^32 bytes in total (virtio 1.2 §2.7.5.2), and accepts exactly 2^32', () => {
    // Descriptors may overlap, so 32 MiB of memory can back a chain of 4 GiB.
    const mem = MockGuestMemory.create(32 << 20).memory
    const cfg = { size: 256, descGpa: 0, availGpa: 0x1000, usedGpa: 0x2000, eventIdx: false }
    const drv = new SplitQueueDriver(mem, cfg)
    const dev = new SplitQueue(mem, cfg)
    const chain = new DescChain(256)
    const piece = 32 << 20
    const build = (n: number): void => {
      for (let i = 0; i < n; i++) drv.writeDescriptor(i, 0, piece, WRITE | (i < n - 1 ? NEXT : 0), i + 1)
      drv.pushAvailRaw(0)
      drv.publishAvail()
      expect(dev.popAvail()).toBe(0)
    }
    build(128)
    expect(dev.walk(0, chain)).toBe(ChainError.OK)
    expect(chain.writableBytes).toBe(2 ** 32)
    build(129)
    expect(dev.walk(0, chain)).toBe(ChainError.TOO_LARGE)
  })

  it('marks the queue broken when avail.idx jumps more than size ahead', () => {
    const t = setup()
    t.drv.setAvailIdx(17)
    expect(t.dev.popAvail()).toBe(-1)
    expect(t.dev.broken).toBe(true)
    expect(t.dev.brokenReason).toMatch(/avail\.idx/)
    t.drv.setAvailIdx(1)
    expect(t.dev.popAvail()).toBe(-1) // stays broken
    expect(t.dev.pending()).toBe(0)
  })

  it('marks the queue broken when avail.idx moves backwards (a huge forward jump mod 2^16)', () => {
    const t = setup({ base: 100 })
    t.drv.setAvailIdx(99)
    expect(t.dev.pending()).toBe(0)
    expect(t.dev.broken).toBe(true)
  })

  it('marks the queue broken for a head >= size', () => {
    const t = setup()
    t.drv.pushAvailRaw(16)
    t.drv.publishAvail()
    expect(t.dev.popAvail()).toBe(-1)
    expect(t.dev.broken).toBe(true)
    expect(t.dev.brokenReason).toMatch(/head 16/)
  })
})

describe('notification suppression without EVENT_IDX (flags)', () => {
  it('NO_NOTIFY stops kicks until notifications are re-enabled', () => {
    const t = setup()
    t.mq.addChain([{ len: 8 }])
    expect(t.drv.needsKick()).toBe(true)
    expect(t.drv.needsKick()).toBe(false) // nothing new since
    t.dev.disableNotification()
    t.mq.addChain([{ len: 8 }])
    expect(t.drv.needsKick()).toBe(false)
    expect(t.dev.enableNotification()).toBe(true) // heads arrived meanwhile: the caller loops
    while (t.dev.popAvail() >= 0);
    expect(t.dev.enableNotification()).toBe(false)
    t.mq.addChain([{ len: 8 }])
    expect(t.drv.needsKick()).toBe(true)
  })

  it('NO_INTERRUPT stops interrupts, and nothing new means no interrupt', () => {
    const t = setup()
    const complete = (): void => {
      t.mq.addChain([{ len: 8, writable: true }])
      t.dev.pushUsed(t.dev.popAvail(), 8)
      t.dev.publishUsed()
    }
    complete()
    expect(t.dev.needsNotification()).toBe(true)
    expect(t.dev.needsNotification()).toBe(false)
    t.drv.setInterruptSuppressed(true)
    complete()
    expect(t.dev.needsNotification()).toBe(false)
    t.drv.setInterruptSuppressed(false)
    complete()
    expect(t.dev.needsNotification()).toBe(true)
  })
})

describe('notification suppression with EVENT_IDX', () => {
  it('implements the wrap-safe need-event rule', () => {
    expect(vringNeedEvent(0, 1, 0)).toBe(true)
    expect(vringNeedEvent(1, 1, 0)).toBe(false)
    expect(vringNeedEvent(5, 10, 3)).toBe(true)
    expect(vringNeedEvent(2, 10, 3)).toBe(false)
    expect(vringNeedEvent(10, 10, 3)).toBe(false)
    expect(vringNeedEvent(65535, 1, 65534)).toBe(true)
    expect(vringNeedEvent(0, 1, 65535)).toBe(true)
    expect(vringNeedEvent(1, 1, 65535)).toBe(false)
    expect(vringNeedEvent(65533, 1, 65534)).toBe(false)
    expect(vringNeedEvent(7, 7, 7)).toBe(false)
  })

  for (const base of [0, 65533]) {
    it(`kicks once per avail_event crossing (base ${base})`, () => {
      const t = setup({ eventIdx: true, base })
      expect(t.dev.enableNotification()).toBe(false) // avail_event = nextAvail
      t.mq.addChain([{ len: 8 }])
      expect(t.drv.needsKick()).toBe(true)
      t.mq.addChain([{ len: 8 }])
      expect(t.drv.needsKick()).toBe(false) // avail_event left behind
      t.dev.disableNotification()
      while (t.dev.popAvail() >= 0);
      expect(t.dev.enableNotification()).toBe(false)
      t.mq.addChain([{ len: 8 }])
      t.mq.addChain([{ len: 8 }])
      expect(t.drv.needsKick()).toBe(true) // a batch of two crosses avail_event once
      expect(t.dev.enableNotification()).toBe(true) // not popped yet: the caller loops
    })

    it(`interrupts once per used_event crossing (base ${base})`, () => {
      const t = setup({ eventIdx: true, base })
      const complete = (): void => {
        t.mq.addChain([{ len: 8, writable: true }])
        t.dev.pushUsed(t.dev.popAvail(), 8)
        t.dev.publishUsed()
      }
      complete()
      expect(t.dev.needsNotification()).toBe(true) // first call after nextUsed was set
      complete()
      expect(t.dev.needsNotification()).toBe(false) // the driver has not reaped: used_event = base, behind
      while (t.mq.reap() !== null);
      complete()
      complete()
      expect(t.dev.needsNotification()).toBe(true) // used_event = reaped index, crossed by this batch
      expect(t.dev.needsNotification()).toBe(false)
    })
  }

  it('treats avail.flags NO_INTERRUPT as ignored when EVENT_IDX is on', () => {
    const t = setup({ eventIdx: true })
    t.drv.setInterruptSuppressed(true)
    t.mq.addChain([{ len: 8, writable: true }])
    t.dev.pushUsed(t.dev.popAvail(), 8)
    t.dev.publishUsed()
    expect(t.dev.needsNotification()).toBe(true)
  })
})

describe('SplitQueueDriver', () => {
  it('rejects malformed chains and indirect chains without a pool', () => {
    const t = setup()
    expect(codeOf(() => t.drv.addChain([]))).toBe('EVQ_BAD_ARGUMENT')
    expect(codeOf(() => t.drv.addChain([{ gpa: BUF, len: 1, writable: true }, { gpa: BUF, len: 1, writable: false }])))
      .toBe('EVQ_BAD_ARGUMENT')
    expect(codeOf(() => t.drv.addChain([{ gpa: BUF, len: 2 ** 32, writable: false }]))).toBe('EVQ_BAD_ARGUMENT')
    expect(codeOf(() => t.drv.writeDescriptor(16, 0, 0, 0, 0))).toBe('EVQ_BAD_ARGUMENT')
    const bare = MockSplitQueue.create({ size: 16, indirectTables: 0 })
    expect(codeOf(() => bare.driver.addChain([{ gpa: BUF, len: 1, writable: false }], true))).toBe('EVQ_BAD_ARGUMENT')
  })

  it('returns -1 when descriptors or indirect tables run out, and frees them on reap', () => {
    const mq = MockSplitQueue.create({ size: 4, indirectTables: 1 })
    const seg = { gpa: mq.dataRanges[0][0], len: 8, writable: false }
    expect(mq.driver.addChain([seg, seg, seg])).toBeGreaterThanOrEqual(0)
    expect(mq.driver.addChain([seg, seg])).toBe(-1)
    expect(mq.driver.addChain([seg, seg, seg, seg], true)).toBeGreaterThanOrEqual(0)
    expect(mq.driver.addChain([seg], true)).toBe(-1) // pool empty
    expect(mq.driver.numFree()).toBe(0)
    mq.driver.publishAvail()
    const dev = mq.createDevice()
    for (let h; (h = dev.popAvail()) >= 0; ) dev.pushUsed(h, 0)
    dev.publishUsed()
    while (mq.reap() !== null);
    expect([mq.driver.numFree(), mq.driver.numFreeIndirect()]).toEqual([4, 1])
  })

  it('rejects an impossible used element and setBase while chains are in flight', () => {
    const t = setup()
    t.mq.addChain([{ len: 8 }])
    expect(codeOf(() => t.drv.setBase(5))).toBe('EVQ_BAD_ARGUMENT')
    t.dev.popAvail()
    t.dev.pushUsed(9, 0) // a head the driver never offered
    t.dev.publishUsed()
    expect(codeOf(() => t.drv.reapUsed())).toBe('EVQ_BAD_USED')
  })

  it('rejects an indirect pool outside memory', () => {
    const mem = MockGuestMemory.create(1 << 16).memory
    const cfg = { size: 16, descGpa: 0, availGpa: 0x1000, usedGpa: 0x2000, eventIdx: false }
    expect(codeOf(() => new SplitQueueDriver(mem, { ...cfg, indirectGpa: 0xff00, indirectBytes: 0x1000 }))).toBe(
      'EVQ_BAD_ARGUMENT',
    )
    expect(codeOf(() => new SplitQueueDriver(mem, { ...cfg, indirectGpa: 0x3000, indirectBytes: 100 }))).toBe(
      'EVQ_BAD_ARGUMENT',
    )
    expect(codeOf(() => new SplitQueueDriver(mem, { ...cfg, indirectGpa: 0x3000, indirectBytes: 1 << 16, indirectEntries: MAX_INDIRECT_ENTRIES + 1 })))
      .toBe('EVQ_BAD_ARGUMENT')
  })
})

describe('MockSplitQueue helper', () => {
  it('places buffers outside the rings, copies data in, and reads used elements raw', () => {
    const mq = MockSplitQueue.create({ size: 8, base: 65535 })
    const { head, segments } = mq.addChain([{ data: Uint8Array.of(1, 2, 3) }, { len: 4, writable: true, fill: 0xee }])
    expect(segments[0].gpa).toBeGreaterThanOrEqual(mq.dataRanges[0][0])
    expect(mq.read(segments[0].gpa, 3)).toEqual(Uint8Array.of(1, 2, 3))
    expect(mq.read(segments[1].gpa, 4)).toEqual(new Uint8Array(4).fill(0xee))
    expect(mq.availIdx).toBe(0)
    const dev = mq.createDevice()
    expect(dev.nextAvail).toBe(65535)
    expect(dev.popAvail()).toBe(head)
    dev.pushUsed(head, 4)
    dev.publishUsed()
    expect(mq.usedIdx).toBe(0)
    expect(mq.readUsed(65535)).toEqual({ id: head, len: 4 })
    expect(mq.reap()).toEqual({ id: head, len: 4 })
    expect(() => mq.alloc(1 << 30)).toThrow(RangeError)
  })
})
