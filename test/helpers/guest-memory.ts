/**
 * MockGuestMemory: a real GuestMemory whose regions are backed by ArrayBuffers (or SharedArrayBuffers) instead of
 * mmap'd memfd memory, for every layer's tests.
 *
 * Owns: the backing buffers, a synthetic frontend-virtual address per region, and byte helpers that cross window and
 * region boundaries. Does not own translation or validation: those are GuestMemory's, exercised as in production.
 */
import { GuestMemory, type GuestMemoryOptions, type RegionSpec } from '../../src/virtqueue/index.js'

/** One region of a mock guest: where it sits in guest-physical space and how big it is. */
export interface MockRegionLayout {
  gpa: number
  size: number
  /** Frontend virtual address; by default UVA_BASE + gpa (distinct for distinct regions). */
  uva?: number
}

/** Options of MockGuestMemory.create. */
export interface MockGuestMemoryOptions extends GuestMemoryOptions {
  /** Back regions with SharedArrayBuffers, as the native mmap route may (default false). */
  shared?: boolean
}

/** Where synthetic frontend-virtual addresses start (looks like a user-space mmap address). */
export const UVA_BASE = 0x7f00_0000_0000

/** Guest memory over ArrayBuffers, one buffer per region (a region may be split from its neighbours by gaps). */
export class MockGuestMemory {
  /** The GuestMemory under test. */
  readonly memory: GuestMemory
  /** The backing buffer of each region, in layout order. */
  readonly buffers: readonly (ArrayBuffer | SharedArrayBuffer)[]
  /** How many windows were mapped, and how many dispose() released. */
  readonly stats = { mapped: 0, unmapped: 0 }

  private constructor(memory: GuestMemory, buffers: (ArrayBuffer | SharedArrayBuffer)[], mapped: number) {
    this.memory = memory
    this.buffers = buffers
    this.stats.mapped = mapped
  }

  /**
   * Builds guest memory from a layout (or a single region of `layout` bytes at GPA 0). Window options go to
   * GuestMemory.create unchanged, so tests can use tiny windows (e.g. stride 4096, overlap 512).
   */
  static create(layout: readonly MockRegionLayout[] | number, opts: MockGuestMemoryOptions = {}): MockGuestMemory {
    const regions: MockRegionLayout[] = typeof layout === 'number' ? [{ gpa: 0, size: layout }] : [...layout]
    const buffers = regions.map((r) => (opts.shared ? new SharedArrayBuffer(r.size) : new ArrayBuffer(r.size)))
    const specs: RegionSpec[] = regions.map((r) => ({ gpa: r.gpa, size: r.size, uva: r.uva ?? UVA_BASE + r.gpa, mmapOffset: 0 }))
    let mapped = 0
    const memory = GuestMemory.create(
      specs,
      (_region, index, offset, length) => {
        mapped++
        return new Uint8Array(buffers[index], offset, length)
      },
      opts,
    )
    return new MockGuestMemory(memory, buffers, mapped)
  }

  /** Copies `data` into guest memory at `gpa`; throws if any byte is unmapped. */
  write(gpa: number, data: Uint8Array): void {
    if (!this.memory.write(gpa, data)) throw new RangeError(`mock guest: [0x${gpa.toString(16)}, +${data.length}) unmapped`)
  }

  /** A copy of guest bytes [gpa, gpa+len); throws if any byte is unmapped. */
  read(gpa: number, len: number): Uint8Array {
    const out = new Uint8Array(len)
    if (!this.memory.read(gpa, out)) throw new RangeError(`mock guest: [0x${gpa.toString(16)}, +${len}) unmapped`)
    return out
  }

  /** Fills guest bytes [gpa, gpa+len) with `value`. */
  fill(gpa: number, len: number, value: number): void {
    this.write(gpa, new Uint8Array(len).fill(value))
  }

  /** Releases the windows (counting them in stats.unmapped); the memory must not be used afterwards. */
  dispose(): void {
    this.memory.dispose(() => {
      this.stats.unmapped++
    })
  }
}
