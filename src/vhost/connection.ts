/**
 * One backend-side vhost-user connection: polls the socket, hands each whole message (framed by
 * framing.ts) to its owner, holds further reads while an asynchronous handler runs so replies
 * stay in order, and sends replies. Owns the socket fd and the fds of a half-read message.
 *
 * Does not interpret messages (that is the backend's state machine) and does not validate payloads
 * beyond the header (messages.ts does, before dispatch).
 */
import * as native from '../native/index.js'
import { MessageReader, writeMessage, type FramedMessage } from './framing.js'
import { encodeMessage } from './messages.js'

/** What the connection delivers: one whole message. The receiver owns `fds` from then on. */
export type IncomingMessage = FramedMessage

/** Callbacks of a connection's owner. */
export interface ConnectionHandler {
  /** A whole message. Return a promise to hold further reads until it settles (replies stay in order). */
  onMessage(msg: IncomingMessage): void | Promise<void>
  /** The connection is gone: peer closed, framing error (`reason`), or close() was called. Called once. */
  onClose(reason: Error | null): void
}

/** One framed vhost-user stream over a connected Unix socket. */
export class Connection {
  private readonly poller: native.Poller
  private readonly reader: MessageReader
  private busy = false
  private closed = false

  constructor(readonly fd: number, private readonly handler: ConnectionHandler) {
    this.reader = new MessageReader(fd)
    this.poller = new native.Poller(fd, () => this.onReadable())
    this.poller.start()
  }

  /** Sends one message. Returns false if the peer is gone (the connection is then closed). */
  send(request: number, flags: number, payload: Uint8Array, fds: readonly number[] = []): boolean {
    if (this.closed) return false
    try {
      if (writeMessage(this.fd, encodeMessage(request, flags, payload), fds)) return true
      this.close(Object.assign(new Error('frontend is not reading its socket'), { code: 'EAGAIN' }))
    } catch (err) {
      this.close(err as Error)
    }
    return false
  }

  /** Stops reading, closes the socket and any fds of a half-read message. Idempotent. */
  close(reason: Error | null = null): void {
    if (this.closed) return
    this.closed = true
    this.poller.close()
    this.reader.discard()
    try { native.close(this.fd) } catch { /* peer already gone */ }
    this.handler.onClose(reason)
  }

  get isClosed(): boolean {
    return this.closed
  }

  private onReadable(): void {
    if (this.busy || this.closed) return
    try {
      for (;;) {
        const msg = this.reader.read()
        if (msg === null) {
          if (this.reader.eof) this.close(null)
          return
        }
        const pending = this.handler.onMessage(msg)
        if (pending !== undefined) {
          this.holdUntil(pending)
          return
        }
        if (this.closed) return
      }
    } catch (err) {
      this.close(err as Error)
    }
  }

  /** Stops reading until an asynchronous handler finishes, so replies go out in request order. */
  private holdUntil(pending: Promise<void>): void {
    this.busy = true
    this.poller.stop()
    pending.then(
      () => {
        this.busy = false
        if (this.closed) return
        this.poller.start()
        this.onReadable()
      },
      (err: Error) => {
        this.busy = false
        this.close(err)
      },
    )
  }
}
