/**
 * Errors of the virtio-blk layer.
 *
 * Owns the one error class of `src/blk` and its stable `code` strings. A guest's bad request is
 * never one of these (it is a status byte, parse.ts); these report queues the device could not
 * serve, which close the frontend's connection.
 */

/** Stable codes carried by every {@link BlkError}; tests and callers match on these. */
export type BlkErrorCode =
  /** An I/O thread could not start a queue (guest memory or the ring could not be mapped there). */
  | 'EBLK_QUEUE_START'
  /** An I/O thread died (an exception escaped it) with queues on it. */
  | 'EBLK_IO_THREAD_EXITED'
  /** The I/O thread that serves the queue's hardware queue never started. */
  | 'EBLK_IO_THREAD_DOWN'

/** Base error of the blk layer; `code` says what went wrong. */
export class BlkError extends Error {
  /** Stable machine-readable reason. */
  readonly code: BlkErrorCode

  /**
   * @param code - stable reason code
   * @param message - human-readable detail (not part of the contract)
   * @param cause - the underlying error, if any
   */
  constructor(code: BlkErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'BlkError'
    this.code = code
    Error.captureStackTrace(this, new.target)
  }
}
