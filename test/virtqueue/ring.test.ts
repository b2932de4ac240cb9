/**
 * Driver and device over the same memory in one process: thousands of random chains (direct and indirect, many
 * segments, buffers crossing windows and adjacent regions), random batch sizes on both sides, index wraparound past
 * 65535, EVENT_IDX on and off. A second scenario lets each side act only when the other notifies it, so a lost kick or
 * interrupt shows up as a stall.
 */
import { describe, it, expect } from 'vitest'
import { ChainError, DescChain, type DriverSegment, type GuestMemory } from '../../src/virtqueue/index.js'
import { MockSplitQueue } from '../helpers/split-queue.js'

/** A small seeded PRNG (mulberry32), so failures reproduce. */
function rng(seed: number) {
  let s = seed >>> 0
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return { int: (n: number): number => Math.floor(next() * n), chance: (p: number): boolean => next() < p }
}
type Rng = ReturnType<typeof rng>

const LAYOUT = [
  { gpa: 0, size: 0x20000 },
  { gpa: 0x20000, size: 0x10000 }, // adjacent: buffers may run across
  { gpa: 0x40000, size: 0x20000 }, // after a gap
]
const WINDOWS = { windowStride: 8192, windowOverlap: 2048 }
const SIZE = 64
/** These runs take about a second; allow for a loaded machine. */
const SLOW = 60_000

type Range = [gpa: number, len: number, writable: boolean]

/** Drops empty ranges and joins contiguous ones of one direction, so window splits do not matter. */
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

function deviceRanges(mem: GuestMemory, chain: DescChain): Range[] {
  const out: Range[] = []
  for (let i = 0; i < chain.count; i++) {
    out.push([mem.windows[chain.window[i]].gpa + chain.offset[i], chain.length[i], i >= chain.readableCount])
  }
  return normalise(out)
}

/** Buffer area with adjacent ranges joined, so random buffers cross region boundaries. */
function areas(mq: MockSplitQueue): [number, number][] {
  const out: [number, number][] = []
  for (const [s, e] of mq.dataRanges) {
    const last = out[out.length - 1]
    if (last !== undefined && last[1] === s) last[1] = e
    else out.push([s, e])
  }
  return out
}

function randomChain(r: Rng, area: readonly [number, number][], maxSegs: number): DriverSegment[] {
  const n = 1 + r.int(maxSegs)
  const readable = r.int(n + 1)
  const segs: DriverSegment[] = []
  for (let i = 0; i < n; i++) {
    const [start, end] = area[r.int(area.length)]
    const len = Math.min(end - start, r.chance(0.05) ? 0 : 1 + r.int(r.chance(0.1) ? 40000 : 700))
    segs.push({ gpa: start + r.int(end - start - len + 1), len, writable: i >= readable })
  }
  return segs
}

function exchange(seed: number, eventIdx: boolean, base: number, total: number): void {
  const r = rng(seed)
  const mq = MockSplitQueue.create({ size: SIZE, eventIdx, base, regions: LAYOUT, memoryOptions: WINDOWS })
  const dev = mq.createDevice()
  const drv = mq.driver
  const area = areas(mq)
  const chain = new DescChain(4 * SIZE)
  const offered = new Map<number, DriverSegment[]>() // made available, not yet popped
  const held: { head: number; writable: number }[] = [] // popped, not yet pushed
  const pushed = new Map<number, number>() // head → used len, not yet reaped
  let sent = 0
  let reaped = 0
  let indirect = 0
  while (reaped < total) {
    switch (r.int(4)) {
      case 0: {
        for (let k = 1 + r.int(8); k > 0 && sent < total; k--) {
          const segs = randomChain(r, area, r.chance(0.2) ? SIZE : 6)
          const useIndirect = r.chance(0.4) || segs.length > 16
          const head = drv.addChain(segs, useIndirect)
          if (head < 0) break
          if (offered.has(head) || pushed.has(head)) throw new Error(`driver reused head ${head} while in flight`)
          offered.set(head, segs)
          sent++
          if (useIndirect) indirect++
        }
        if (sent === total || r.chance(0.8)) drv.publishAvail()
        break
      }
      case 1: {
        for (let k = 1 + r.int(16); k > 0; k--) {
          const head = dev.popAvail()
          if (head < 0) break
          if (r.chance(0.1)) {
            dev.undoPop() // backpressure: the head stays in the ring
            break
          }
          const segs = offered.get(head)
          if (segs === undefined) throw new Error(`device popped head ${head}, which is not on offer`)
          offered.delete(head)
          expect(dev.walk(head, chain)).toBe(ChainError.OK)
          const got = deviceRanges(mq.memory, chain)
          const want = normalise(segs.map((s) => [s.gpa, s.len, s.writable]))
          // expect() per chain is slow; compare cheaply and let expect() explain a mismatch.
          if (JSON.stringify(got) !== JSON.stringify(want)) expect(got).toEqual(want)
          held.push({ head, writable: chain.writableBytes })
        }
        break
      }
      case 2: {
        for (let k = r.int(held.length + 1); k > 0; k--) {
          const i = r.int(held.length)
          const { head, writable } = held[i]
          held[i] = held[held.length - 1]
          held.pop()
          const len = r.int(writable + 1)
          dev.pushUsed(head, len)
          pushed.set(head, len)
        }
        if (held.length === 0 || r.chance(0.7)) dev.publishUsed()
        break
      }
      default: {
        for (let id; (id = drv.reapUsed()) >= 0; reaped++) {
          if (pushed.get(id) !== drv.lastUsedLen) expect([id, drv.lastUsedLen]).toEqual([id, pushed.get(id)])
          pushed.delete(id)
        }
      }
    }
  }
  expect(dev.broken).toBe(false)
  expect(indirect).toBeGreaterThan(total / 4)
  expect([offered.size, held.length, pushed.size, drv.numFree()]).toEqual([0, 0, 0, SIZE])
  expect(drv.availIdx).toBe((base + total) & 0xffff)
  expect(dev.nextAvail).toBe((base + total) & 0xffff)
  expect(dev.readUsedIdx()).toBe((base + total) & 0xffff)
}

/** Each side acts only when notified (kick / interrupt), as with eventfds: a lost notification stalls the run. */
function notified(seed: number, eventIdx: boolean, base: number, total: number): void {
  const r = rng(seed)
  const size = 32
  const tags = 8
  const mq = MockSplitQueue.create({ size, eventIdx, base, regions: LAYOUT, memoryOptions: WINDOWS })
  const dev = mq.createDevice()
  const drv = mq.driver
  const area = areas(mq)
  const chain = new DescChain(4 * size)
  const held: number[] = []
  let kick = false
  let irq = false
  let waitingForTag = false
  let sent = 0
  let reaped = 0

  const onKick = (): void => {
    waitingForTag = false
    do {
      dev.disableNotification()
      let head: number
      while ((head = dev.popAvail()) >= 0) {
        if (held.length === tags) {
          dev.undoPop()
          waitingForTag = true // notifications stay off: completion resumes the queue
          break
        }
        expect(dev.walk(head, chain)).toBe(ChainError.OK)
        held.push(head)
      }
    } while (!waitingForTag && dev.enableNotification())
  }
  const complete = (): void => {
    for (let k = 1 + r.int(held.length); k > 0; k--) {
      const i = r.int(held.length)
      dev.pushUsed(held[i], 0)
      held[i] = held[held.length - 1]
      held.pop()
    }
    dev.publishUsed()
    if (dev.needsNotification()) irq = true
    if (waitingForTag) onKick()
  }
  const onInterrupt = (): void => {
    irq = false
    for (;;) {
      if (!eventIdx) drv.setInterruptSuppressed(true)
      while (drv.reapUsed() >= 0) reaped++
      if (eventIdx) return // reapUsed stored used_event, then re-loaded used.idx: already re-checked
      drv.setInterruptSuppressed(false)
      if (drv.readUsedIdx() === drv.lastUsedIdx) return // virtio 1.2 §2.7.14: re-check after re-enabling
    }
  }

  // A started queue makes one pass (vhost starts it with a kick): with EVENT_IDX that pass's enableNotification
  // writes avail_event, which the driver's need-event rule reads from then on.
  onKick()
  for (;;) {
    const quiet = !kick && !irq && held.length === 0
    if (quiet && (sent === total || drv.numFree() === 0)) break
    switch (r.int(4)) {
      case 0:
        for (let k = 1 + r.int(4); k > 0 && sent < total; k--) {
          let head = drv.addChain(randomChain(r, area, 3), r.chance(0.3))
          if (head < 0) head = drv.addChain(randomChain(r, area, 1), false)
          if (head < 0) break
          sent++
        }
        drv.publishAvail()
        if (drv.needsKick()) kick = true
        break
      case 1:
        if (kick) {
          kick = false
          onKick()
        }
        break
      case 2:
        if (held.length > 0) complete()
        break
      default:
        if (irq) onInterrupt()
    }
  }
  expect({ reaped, pendingInRing: dev.pending(), free: drv.numFree() }).toEqual({ reaped: total, pendingInRing: 0, free: size })
}

describe('driver and device exchange random chains', () => {
  for (const eventIdx of [false, true]) {
    for (const base of [0, 65000]) {
      it(`delivers every chain exactly once (eventIdx ${eventIdx}, base ${base})`, () => {
        for (const seed of [1, 2, 3]) exchange(seed * 7919 + base, eventIdx, base, 3000)
      }, SLOW)
    }
  }
})

describe('notification suppression never loses a wakeup', () => {
  for (const eventIdx of [false, true]) {
    for (const base of [0, 65500]) {
      it(`drains when both sides act only on notifications (eventIdx ${eventIdx}, base ${base})`, () => {
        for (let seed = 1; seed <= 5; seed++) notified(seed, eventIdx, base, 2000)
      }, SLOW)
    }
  }
})
