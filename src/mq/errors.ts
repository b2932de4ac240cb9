/**
 * Errors of the blk-mq layer.
 *
 * Owns the one error class of `src/mq` and its stable `code` strings. Only programming and
 * configuration mistakes become exceptions here (a bad option, a request ended twice, a driver
 * breaking the `queueRq` contract); an I/O failure is a `BlkStatus`, never an `Error`.
 */

/** Stable codes carried by every {@link MqError}; tests and callers match on these, not on messages. */
export type MqErrorCode =
  /** Bad API or configuration input (a `TagSet` option, a `GenDiskBuilder` value, an index out of range). */
  | 'EMQ_INVALID_ARGUMENT'
  /** `end()`/`complete()` on a request that is not in flight, or that was already completed. */
  | 'EMQ_DOUBLE_END'
  /** `end()`/`complete()` with a generation that is not the request's current one (its tag was reused). */
  | 'EMQ_STALE_END'
  /** `dispatch()` of a request that is not freshly allocated (free, or already dispatched/queued/completed). */
  | 'EMQ_NOT_STARTED'
  /** `dispatch()` on a hardware queue that does not own the request. */
  | 'EMQ_WRONG_QUEUE'
  /** `requeue()` or `complete()` of a request the driver does not hold. */
  | 'EMQ_NOT_DISPATCHED'
  /** The driver ended or completed a request and then returned a non-OK status from `queueRq` for it. */
  | 'EMQ_DRIVER_CONTRACT'
  /** `TagSet.destroy()` while requests are in flight. */
  | 'EMQ_BUSY'
  /** Use of a `TagSet` after `destroy()`. */
  | 'EMQ_DESTROYED'

/** Base error of the mq layer; `code` says what went wrong. */
export class MqError extends Error {
  /** Stable machine-readable reason. */
  readonly code: MqErrorCode

  /**
   * @param code - stable reason code
   * @param message - human-readable detail (not part of the contract)
   */
  constructor(code: MqErrorCode, message: string) {
    super(message)
    this.name = 'MqError'
    this.code = code
    Error.captureStackTrace(this, new.target)
  }
}

/** Bad API or configuration input; always has code `EMQ_INVALID_ARGUMENT`. */
export class InvalidArgumentError extends MqError {
  /** @param message - names the offending option and the accepted range */
  constructor(message: string) {
    super('EMQ_INVALID_ARGUMENT', message)
    this.name = 'InvalidArgumentError'
  }
}
