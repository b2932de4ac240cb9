/**
 * Message framing for one vhost-user connection: reads a 12-byte header, then exactly the
 * payload it announces, collecting the fds (SCM_RIGHTS) that arrive meanwhile, and hands the
 * complete message to its owner; sends replies. Owns the socket fd and every fd received until
 * they are handed over with a message.
 *
 * Does not interpret messages (that is the backend's state machine) and does not validate payloads
 * beyond the header (messages.ts does, before dispatch).
 */
import * as native from '../native/index.js'
import { HEADER_SIZE, MAX_FDS, decodeHeader, encodeHeader, type MessageHeader } from './messages.js'

/** What the connection delivers: one whole message. The receiver owns `fds` from then on. */
export interface IncomingMessage {
  header: MessageHeader
  payload: Uint8Array
  fds: number[]
}

/** Callbacks of a connection's owner. */
export interface ConnectionHandler {
  /** A whole message. Return a promise to hold further reads until it settles (replies stay in order). */
  onMessage(msg: IncomingMessage): void | Promise<void>
  /** The connection is gone: peer closed, framing error (`reason`), or close() was called. Called once. */
  onClose(reason: Error | null): void
}

/** Closes every fd in the list, ignoring errors: used for fds a message must not keep. */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try { native.close(fd) } catch { /* already closed: nothing to leak */ }
  }
}

/** One framed vhost-user stream over a connected Unix socket. */
export class Connection {
  private readonly poller: native.Poller
  private readonly headerBytes = new Uint8Array(HEADER_SIZE)
  private readonly sendHeader = new Uint8Array(HEADER_SIZE)
  private header: MessageHeader | null = null
  private payload = new Uint8Array(0)
  private filled = 0
  private pendingFds: number[] = []
  private busy = false
  private closed = false

  constructor(readonly fd: number, private readonly handler: ConnectionHandler) {
    this.poller = new native.Poller(fd, () => this.onReadable())
    this.poller.start()
  }

  /** Sends one message (header built from `request`/`flags`, payload, fds). Returns false if the peer is gone. */
  send(request: number, flags: number, payload: Uint8Array, fds: readonly number[] = []): boolean {
    if (this.closed) return false
    encodeHeader({ request, flags, size: payload.length }, this.sendHeader)
    const whole = new Uint8Array(HEADER_SIZE + payload.length)
    whole.set(this.sendHeader, 0)
    whole.set(payload, HEADER_SIZE)
    try {
      let sent = 0
      let first = true
      while (sent < whole.length) {
        const n = native.sendMsg(this.fd, whole, sent, whole.length - sent, first ? fds : undefined)
        // A reply is at most a few hundred bytes; a full socket buffer here means the peer stopped reading.
        if (n < 0) throw Object.assign(new Error('frontend is not reading its socket'), { code: 'EAGAIN' })
        sent += n
        first = false
      }
      return true
    } catch (err) {
      this.close(err as Error)
      return false
    }
  }

  /** Stops reading, closes the socket and any fds of a half-read message. Idempotent. */
  close(reason: Error | null = null): void {
    if (this.closed) return
    this.closed = true
    this.poller.close()
    closeFds(this.pendingFds)
    this.pendingFds = []
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
        const msg = this.readMessage()
        if (msg === null) return
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

  /** Reads what is available; returns a whole message, or null when more bytes must arrive first. */
  private readMessage(): IncomingMessage | null {
    if (this.header === null) {
      if (!this.fill(this.headerBytes)) return null
      // decodeHeader throws a VhostUserError (bad version bits, size above MAX_PAYLOAD_SIZE): that closes us.
      this.header = decodeHeader(this.headerBytes)
      this.payload = new Uint8Array(this.header.size)
      this.filled = 0
    }
    if (!this.fill(this.payload)) return null
    const msg = { header: this.header, payload: this.payload, fds: this.pendingFds }
    this.header = null
    this.pendingFds = []
    this.filled = 0
    return msg
  }

  /** Fills `buf` from the socket; true when full. EOF in the middle of a message is an error. */
  private fill(buf: Uint8Array): boolean {
    while (this.filled < buf.length) {
      const r = native.recvMsg(this.fd, buf, this.filled, buf.length - this.filled)
      if (r === null) return false
      if (r.fds.length > 0) {
        this.pendingFds.push(...r.fds)
        if (this.pendingFds.length > MAX_FDS) {
          throw Object.assign(new Error(`more than ${MAX_FDS} fds attached to one message`), { code: 'EVHOST_BAD_FDS' })
        }
      }
      if (r.bytes === 0) {
        const midMessage = this.header !== null || this.filled > 0
        if (!midMessage) {
          this.close(null)
          return false
        }
        throw Object.assign(new Error('connection closed in the middle of a message'), { code: 'EVHOST_TRUNCATED' })
      }
      this.filled += r.bytes
    }
    return true
  }
}
