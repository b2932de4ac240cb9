/**
 * Errors of the disk drivers (`src/disks`).
 *
 * Owns the one error class of the layer and its stable `code` strings. Only setup failures
 * (opening, locking, sizing an image; choosing an I/O engine) become exceptions; an I/O failure
 * while serving is a `BlkStatus` on its request, never an `Error`.
 */

/** Stable codes carried by every {@link DiskError}; tests and callers match on these. */
export type DiskErrorCode =
  /** The image does not exist and no size was given to create it. */
  | 'EDISK_NOT_FOUND'
  /** The image cannot be opened, read or resized (permissions, not a file or block device...). */
  | 'EDISK_OPEN'
  /** Another process (or server) holds a conflicting lock on the image. */
  | 'EDISK_LOCKED'
  /** The image holds no whole logical block, or a block device is smaller than the size asked for. */
  | 'EDISK_SIZE'
  /** The image and the chosen logical block size do not fit (block device sectors, O_DIRECT alignment). */
  | 'EDISK_BLOCK_SIZE'
  /** O_DIRECT was asked for and the filesystem does not support it. */
  | 'EDISK_DIRECT'
  /** The I/O engine asked for cannot run here (io_uring unavailable). */
  | 'EDISK_ENGINE'

/** Base error of the disks layer; `code` says what went wrong, `cause` keeps the system error. */
export class DiskError extends Error {
  /** Stable machine-readable reason. */
  readonly code: DiskErrorCode

  /**
   * @param code - stable reason code
   * @param message - one line for the user, naming the image (not part of the contract)
   * @param cause - the underlying system error, if any
   */
  constructor(code: DiskErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'DiskError'
    this.code = code
    Error.captureStackTrace(this, new.target)
  }
}
