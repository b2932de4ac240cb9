/**
 * A first-fit range allocator over disjoint address ranges (the guest RAM regions): hands out
 * aligned, contiguous ranges that never cross a range boundary, and coalesces on free.
 *
 * Owns: bookkeeping of free address space only; never touches memory. Control-path cost: each
 * call walks the free list, which stays short because the client frees what it allocates.
 */

interface Extent {
  start: number
  end: number
}

/** Allocates [gpa, gpa+len) ranges from a fixed set of disjoint ranges. */
export class RangeAllocator {
  /** Free extents per range, sorted by start. */
  private readonly free: Extent[][]
  private readonly ranges: readonly Extent[]

  /** `ranges`: disjoint [start, start+size) spans (e.g. guest RAM regions), addresses below 2^53. */
  constructor(ranges: readonly { start: number; size: number }[]) {
    this.ranges = ranges.map((r) => ({ start: r.start, end: r.start + r.size }))
    this.free = this.ranges.map((r) => [{ ...r }])
  }

  /** Largest length one allocation can ever have (the largest range). */
  get maxAllocation(): number {
    return Math.max(0, ...this.ranges.map((r) => r.end - r.start))
  }

  /** Allocates `len` > 0 bytes aligned to `align` (a power of two); returns the start, or -1 if nothing fits now. */
  alloc(len: number, align: number): number {
    for (const list of this.free) {
      for (let i = 0; i < list.length; i++) {
        const e = list[i]
        const start = Math.ceil(e.start / align) * align
        if (start + len > e.end) continue
        const tail: Extent = { start: start + len, end: e.end }
        const pieces: Extent[] = []
        if (start > e.start) pieces.push({ start: e.start, end: start })
        if (tail.end > tail.start) pieces.push(tail)
        list.splice(i, 1, ...pieces)
        return start
      }
    }
    return -1
  }

  /** Returns [start, start+len) to the free lists, merging with neighbours. */
  release(start: number, len: number): void {
    const end = start + len
    const ri = this.ranges.findIndex((r) => start >= r.start && end <= r.end)
    if (ri < 0 || len <= 0) throw new RangeError(`release of [0x${start.toString(16)}, +${len}) outside every range`)
    const list = this.free[ri]
    let i = 0
    while (i < list.length && list[i].start < start) i++
    const prev = i > 0 ? list[i - 1] : null
    const next = i < list.length ? list[i] : null
    if ((prev !== null && prev.end > start) || (next !== null && next.start < end)) {
      throw new RangeError(`double release of [0x${start.toString(16)}, +${len})`)
    }
    if (prev !== null && prev.end === start && next !== null && next.start === end) {
      prev.end = next.end
      list.splice(i, 1)
    } else if (prev !== null && prev.end === start) {
      prev.end = end
    } else if (next !== null && next.start === end) {
      next.start = start
    } else {
      list.splice(i, 0, { start, end })
    }
  }

  /** Total free bytes (for tests and diagnostics). */
  get freeBytes(): number {
    let n = 0
    for (const list of this.free) for (const e of list) n += e.end - e.start
    return n
  }
}
