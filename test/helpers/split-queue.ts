/**
 * MockSplitQueue: the driver side of a split ring over MockGuestMemory, with a bump allocator for buffers, for every
 * layer's tests (virtqueue, blk, vhost). The device side is the real SplitQueue, built over the same memory by
 * createDevice().
 *
 * Owns: the guest-physical layout (rings, indirect pool, buffer area) and buffer allocation. Does not own ring logic:
 * it delegates to SplitQueueDriver, so the tests exercise the same code the frontend uses.
 */
import {
  SplitQueue,
  SplitQueueDriver,
  availRingBytes,
  descTableBytes,
  usedRingBytes,
  type DriverSegment,
  type GuestMemory,
  type SplitQueueConfig,
} from '../../src/virtqueue/index.js'
import { MockGuestMemory, type MockGuestMemoryOptions, type MockRegionLayout } from './guest-memory.js'

/** Options of MockSplitQueue.create. */
export interface MockSplitQueueOptions {
  /** Queue size (default 128). */
  size?: number
  /** Negotiate VIRTIO_F_RING_EVENT_IDX (default false). */
  eventIdx?: boolean
  /** Initial avail/used index for both sides (default 0); e.g. 65500 to cross the 16-bit wrap. */
  base?: number
  /** Guest memory layout, or the byte size of one region at GPA 0 (default 4 MiB). Rings go at the first region's start. */
  regions?: readonly MockRegionLayout[] | number
  /** Indirect tables in the pool, each of `size` entries (default 16; 0 for no pool). */
  indirectTables?: number
  /** GuestMemory window options and buffer kind. */
  memoryOptions?: MockGuestMemoryOptions
}

/** One buffer of a chain: device-readable `data`, or `len` device-writable bytes (pre-filled with `fill`). */
export interface MockBuffer {
  /** Contents of a device-readable buffer (copied into guest memory). */
  data?: Uint8Array
  /** Length of a writable buffer (or of a zero-filled readable one when data is absent). */
  len?: number
  /** Device-writable. */
  writable?: boolean
  /** Initial byte value of a writable buffer (default 0). */
  fill?: number
}

/** A chain made available: its head and where each buffer lives. */
export interface AddedChain {
  head: number
  segments: DriverSegment[]
}

/** A used-ring element. */
export interface UsedElem {
  id: number
  len: number
}

const align = (x: number, a: number): number => Math.ceil(x / a) * a

/** Driver-side test double of one split virtqueue. */
export class MockSplitQueue {
  /** The mock guest's memory and byte helpers. */
  readonly guest: MockGuestMemory
  /** The GuestMemory both sides use. */
  readonly memory: GuestMemory
  /** The driver half. */
  readonly driver: SplitQueueDriver
  /** Ring placement, for building the device half (or a vhost SET_VRING_ADDR). */
  readonly config: SplitQueueConfig
  /** The avail/used index both sides started at. */
  readonly base: number
  /** The buffer area: guest-physical [start, end) ranges after the rings and the indirect pool, in GPA order. */
  readonly dataRanges: readonly (readonly [number, number])[]
  readonly #ranges: [number, number][]
  #range = 0
  #cursor = 0

  private constructor(opts: MockSplitQueueOptions) {
    const size = opts.size ?? 128
    this.guest = MockGuestMemory.create(opts.regions ?? 4 << 20, opts.memoryOptions)
    this.memory = this.guest.memory
    const first = this.memory.regions[0]
    const descGpa = align(first.gpa, 4096)
    const availGpa = align(descGpa + descTableBytes(size), 16)
    const usedGpa = align(availGpa + availRingBytes(size), 16)
    const poolGpa = align(usedGpa + usedRingBytes(size), 16)
    const tables = opts.indirectTables ?? 16
    const poolBytes = tables * size * 16
    this.config = { size, descGpa, availGpa, usedGpa, eventIdx: opts.eventIdx ?? false }
    this.driver = new SplitQueueDriver(
      this.memory,
      tables > 0 ? { ...this.config, indirectGpa: poolGpa, indirectBytes: poolBytes } : this.config,
    )
    this.base = (opts.base ?? 0) & 0xffff
    this.driver.setBase(this.base)
    const dataStart = poolGpa + poolBytes
    this.#ranges = [...this.memory.regions]
      .sort((a, b) => a.gpa - b.gpa)
      .map((r): [number, number] => [Math.max(r.gpa, dataStart), r.gpa + r.size])
      .filter(([start, end]) => start < end)
    this.dataRanges = this.#ranges.map(([start, end]) => [start, end] as const)
    this.resetAllocator()
  }

  /** Builds the queue and initialises its rings. */
  static create(opts: MockSplitQueueOptions = {}): MockSplitQueue {
    return new MockSplitQueue(opts)
  }

  /**
   * The device half over the same memory, started as vhost would: nextAvail = base (SET_VRING_BASE), nextUsed =
   * used.idx. Chains added before this call are still ahead of the device.
   */
  createDevice(): SplitQueue {
    const vq = new SplitQueue(this.memory, this.config)
    vq.nextAvail = this.base
    vq.nextUsed = vq.readUsedIdx()
    return vq
  }

  /** Allocates `len` bytes of buffer memory (never inside the rings); throws when the buffer area is exhausted. */
  alloc(len: number, alignment = 16): number {
    for (; this.#range < this.#ranges.length; this.#range++, this.#cursor = -1) {
      const [start, end] = this.#ranges[this.#range]
      const at = align(Math.max(this.#cursor, start), alignment)
      if (at + len <= end) {
        this.#cursor = at + len
        return at
      }
    }
    throw new RangeError('MockSplitQueue: buffer memory exhausted (call resetAllocator once chains are reaped)')
  }

  /** Forgets every allocation (buffers of chains still in flight would be reused). */
  resetAllocator(): void {
    this.#range = 0
    this.#cursor = -1
  }

  /**
   * Allocates and fills the buffers, adds them as one chain (indirect if asked), and publishes avail.idx unless
   * `publish` is false. Throws when the ring or the indirect pool is full.
   */
  addChain(buffers: readonly MockBuffer[], opts: { indirect?: boolean; publish?: boolean } = {}): AddedChain {
    const segments = buffers.map((b): DriverSegment => {
      const len = b.data?.length ?? b.len ?? 0
      const gpa = this.alloc(len)
      if (b.data !== undefined) this.guest.write(gpa, b.data)
      else this.guest.fill(gpa, len, b.fill ?? 0)
      return { gpa, len, writable: b.writable ?? false }
    })
    const head = this.driver.addChain(segments, opts.indirect ?? false)
    if (head < 0) throw new RangeError('MockSplitQueue: no free descriptors or indirect tables')
    if (opts.publish ?? true) this.driver.publishAvail()
    return { head, segments }
  }

  /** The next used element (freeing its chain), or null when the device has published nothing new. */
  reap(): UsedElem | null {
    const id = this.driver.reapUsed()
    return id < 0 ? null : { id, len: this.driver.lastUsedLen }
  }

  /** The used-ring element at free-running used index `i`, read raw (whether or not it was reaped). */
  readUsed(i: number): UsedElem {
    const at = this.config.usedGpa + 4 + 8 * (i & (this.config.size - 1))
    const view = new DataView(this.guest.read(at, 8).buffer)
    return { id: view.getUint32(0, true), len: view.getUint32(4, true) }
  }

  /** avail.idx as published. */
  get availIdx(): number {
    return this.driver.availIdx
  }

  /** used.idx in guest memory. */
  get usedIdx(): number {
    return this.driver.readUsedIdx()
  }

  /** A copy of guest bytes. */
  read(gpa: number, len: number): Uint8Array {
    return this.guest.read(gpa, len)
  }

  /** Writes guest bytes. */
  write(gpa: number, data: Uint8Array): void {
    this.guest.write(gpa, data)
  }
}
