/**
 * DescChain: the result of walking one descriptor chain, as a list of segments that point into mapped guest memory.
 *
 * Owns: the preallocated segment arrays. Does not own walking (split-queue.ts) or translation (guest-memory.ts), and
 * holds no reference to the memory: segments name windows by index into the GuestMemory that filled them, so a chain
 * is only meaningful together with that GuestMemory. One instance per in-flight request, reused: no allocation per
 * request.
 */
import { VirtqueueError } from './errors.js'

/** Segments of one chain: device-readable segments first, then device-writable ones (virtio 1.2 §2.7.4.2). */
export class DescChain {
  /** Maximum number of segments this chain can hold. */
  readonly capacity: number
  /** Head descriptor index of the chain (the id to put on the used ring). */
  head = 0
  /** Segments in use. */
  count = 0
  /** Segments [0, readableCount) are device-readable; [readableCount, count) are device-writable. */
  readableCount = 0
  /** Total bytes of the readable segments. */
  readableBytes = 0
  /** Total bytes of the writable segments. */
  writableBytes = 0
  /** Per segment: index into `GuestMemory.windows`. */
  readonly window: Uint32Array
  /** Per segment: byte offset inside that window's `bytes`. */
  readonly offset: Uint32Array
  /** Per segment: length in bytes (never 0). */
  readonly length: Uint32Array

  /** @param capacity - maximum segments (a positive integer) */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 0xffffffff) {
      throw new VirtqueueError('EVQ_BAD_ARGUMENT', `DescChain capacity must be a positive integer, got ${capacity}`, {
        capacity,
      })
    }
    this.capacity = capacity
    this.window = new Uint32Array(capacity)
    this.offset = new Uint32Array(capacity)
    this.length = new Uint32Array(capacity)
  }

  /** Empties the chain and records its head. */
  reset(head: number): void {
    this.head = head
    this.count = 0
    this.readableCount = 0
    this.readableBytes = 0
    this.writableBytes = 0
  }
}
