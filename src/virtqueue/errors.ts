/**
 * The virtqueue layer's one error class and its stable codes.
 *
 * Owns: `VirtqueueError` and the `VirtqueueErrorCode` union. Thrown only on the control path (memory table, ring
 * placement, driver-side API misuse). Per-request guest mistakes are never exceptions: the descriptor walker returns a
 * `ChainError` number and a corrupted avail ring marks the queue `broken` (see split-queue.ts).
 */

/** Stable error codes; tests and callers branch on these, never on the message text. */
export type VirtqueueErrorCode =
  /** A memory region is malformed: size 0, a negative or non-integer field, or an end beyond 2^53. */
  | 'EVQ_BAD_REGION'
  /** Two memory regions overlap in guest-physical or in frontend-virtual address space. */
  | 'EVQ_REGION_OVERLAP'
  /** GuestMemory options out of range (window stride/overlap). */
  | 'EVQ_BAD_OPTIONS'
  /** The mapWindow callback returned a view of the wrong length or alignment. */
  | 'EVQ_BAD_MAPPING'
  /** Queue size or ring alignment is invalid (virtio 1.2 §2.7, §2.7.1). */
  | 'EVQ_BAD_RING'
  /** A ring area is not wholly inside one mapped window of guest memory. */
  | 'EVQ_RING_OUTSIDE_MEMORY'
  /** Typed-array ring views are host-endian and virtio rings are little-endian: a big-endian host is unsupported. */
  | 'EVQ_BIG_ENDIAN_HOST'
  /** Driver-side API misuse (a malformed chain handed to SplitQueueDriver, no indirect pool, chains in flight). */
  | 'EVQ_BAD_ARGUMENT'
  /** The driver side found an impossible used-ring element (unknown id, index ahead by more than the queue size). */
  | 'EVQ_BAD_USED'

/** The error thrown by the virtqueue layer; `code` is stable, `context` carries the offending values. */
export class VirtqueueError extends Error {
  /** Stable machine-readable code. */
  readonly code: VirtqueueErrorCode
  /** The values that triggered the error (addresses, sizes, indices), for logs. */
  readonly context: Readonly<Record<string, unknown>> | undefined

  /**
   * @param code - stable code
   * @param message - human-readable text naming the mistake
   * @param context - offending values
   */
  constructor(code: VirtqueueErrorCode, message: string, context?: Readonly<Record<string, unknown>>) {
    super(message)
    this.name = 'VirtqueueError'
    this.code = code
    this.context = context
    Error.captureStackTrace(this, VirtqueueError)
  }
}
