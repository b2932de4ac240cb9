/**
 * The frontend layer's error class. Owns the stable codes a caller of VhostUserBlkClient can
 * assert on; protocol decoding errors from src/vhost/messages.ts are wrapped as EFRONTEND_PROTOCOL
 * with the original error as `cause`.
 */

/** Stable codes of VhostUserClientError. */
export type VhostUserClientErrorCode =
  /** An option or argument is invalid (sizes, queue index, request too large for the device). */
  | 'EFRONTEND_ARGUMENT'
  /** The back-end lacks something this client needs (VERSION_1, the CONFIG protocol feature, queues). */
  | 'EFRONTEND_FEATURES'
  /** The back-end sent something malformed or unexpected (wrong reply, bad header, bad size). */
  | 'EFRONTEND_PROTOCOL'
  /** The back-end answered a NEED_REPLY request with a non-zero status (REPLY_ACK NACK). */
  | 'EFRONTEND_NACK'
  /** The connection is closed (close() was called, or the back-end went away). */
  | 'EFRONTEND_CLOSED'
  /** A raw submission did not complete within its timeout. */
  | 'EFRONTEND_TIMEOUT'
  /** The queue is claimed by a ring owner (the load generator), or busy when a claim was asked. */
  | 'EFRONTEND_BUSY'

/** Errors raised by src/frontend. Assert on `code`, not on the message. */
export class VhostUserClientError extends Error {
  override readonly name = 'VhostUserClientError'

  constructor(readonly code: VhostUserClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    Error.captureStackTrace?.(this, VhostUserClientError)
  }
}
