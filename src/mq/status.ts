/**
 * Block-layer vocabulary: completion status, request operation and request flags.
 *
 * Owns the numbers only. Mapping them to wire values (virtio-blk status bytes and request
 * types) is the `blk` layer's job; this module knows nothing of virtio.
 */

/**
 * Completion status of a request, like the kernel's `blk_status_t`. Plain numbers so that a
 * per-request failure never allocates.
 */
export const BlkStatus = {
  /** Success. */
  OK: 0,
  /** I/O error (host failure, request out of range, malformed request). */
  IOERR: 1,
  /** Operation not supported by the device. */
  NOTSUPP: 2,
  /** Driver busy: from `queueRq` it means "requeue and retry later", never an end status. */
  RESOURCE: 3,
  /** No space left on the backing store. */
  NOSPC: 4,
  /** The request exceeded the tag set's timeout. */
  TIMEOUT: 5,
  /** Protection failure, e.g. a write to a read-only disk. */
  PROTECTION: 6,
} as const

/** One of the {@link BlkStatus} values. */
export type BlkStatus = typeof BlkStatus[keyof typeof BlkStatus]

/** Operation of a request (the kernel's `REQ_OP_*`). */
export const ReqOp = {
  /** Read `sectors` sectors at `sector` into the data segments. */
  Read: 0,
  /** Write the data segments to `sectors` sectors at `sector`. */
  Write: 1,
  /** Make previously completed writes durable. */
  Flush: 2,
  /** Discard the ranges in `rangeSector`/`rangeSectors`. */
  Discard: 3,
  /** Zero the ranges in `rangeSector`/`rangeSectors` (per-range `ReqFlag.UNMAP` may deallocate). */
  WriteZeroes: 4,
  /** Write the disk's serial (up to 20 bytes) into the data segments. */
  GetId: 5,
} as const

/** One of the {@link ReqOp} values. */
export type ReqOp = typeof ReqOp[keyof typeof ReqOp]

/** Bits of `Request.flags` and `Request.rangeFlags[i]`. */
export const ReqFlag = {
  /** Write-zeroes may deallocate the range instead of writing zeroes. */
  UNMAP: 1,
  /** Force unit access: the write is durable when it completes. */
  FUA: 2,
} as const
