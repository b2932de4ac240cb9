/**
 * The front-end end of a vhost-user control socket: sends requests (with fds) and waits for their
 * replies. vhost-user is strictly in order, one reply per request that wants one, so calls are
 * serialised: the next request goes out only after the previous one finished.
 *
 * Owns: the socket fd, its poller, the receive framing and every fd received with a reply until
 * it is handed to the caller. Does not interpret payloads (the client does, with messages.ts).
 *
 * The poller holds the event loop only while a reply is awaited, so an idle client does not keep
 * the process alive.
 */
import * as native from '../native/index.js'
import {
  FLAG_REPLY, HEADER_SIZE, MAX_FDS, VhostUserError, decodeHeader, encodeMessage, requestName, type MessageHeader,
} from '../vhost/messages.js'
import { VhostUserClientError } from './errors.js'

/** One message from the back-end. The receiver owns `fds`. */
export interface Reply {
  header: MessageHeader
  payload: Uint8Array
  fds: number[]
}

interface Waiter {
  request: number
  resolve(reply: Reply): void
  reject(err: Error): void
}

/** A connected control socket with in-order request/reply. */
export class ControlChannel {
  private readonly poller: native.Poller
  private readonly headerBytes = new Uint8Array(HEADER_SIZE)
  private header: MessageHeader | null = null
  private payload = new Uint8Array(0)
  private filled = 0
  private rxFds: number[] = []
  private waiter: Waiter | null = null
  private tail: Promise<unknown> = Promise.resolve()
  private closedBy: VhostUserClientError | null = null
  /** Called once when the channel closes, with the reason (EFRONTEND_CLOSED, EFRONTEND_PROTOCOL). */
  onClose: ((reason: VhostUserClientError) => void) | null = null

  /** Connects to the back-end's listening socket at `path`. Throws the native errno error (ENOENT, ECONNREFUSED). */
  static connect(path: string): ControlChannel {
    return new ControlChannel(native.unixConnect(path))
  }

  private constructor(readonly fd: number) {
    this.poller = new native.Poller(fd, () => this.onReadable())
    this.poller.start()
    this.poller.unref()
  }

  /** True once the channel is closed (by close() or because the back-end went away). */
  get closed(): boolean {
    return this.closedBy !== null
  }

  /**
   * Sends one request and, when `expectReply`, resolves with the back-end's reply (which must
   * carry FLAG_REPLY and the same request code); otherwise resolves with null once sent.
   * `fds` are sent, not closed: the caller keeps owning them.
   */
  call(request: number, flags: number, payload: Uint8Array, fds: readonly number[], expectReply: boolean): Promise<Reply | null> {
    const run = (): Promise<Reply | null> => this.exchange(request, flags, payload, fds, expectReply)
    const result = this.tail.then(run, run)
    this.tail = result.catch(() => undefined)
    return result
  }

  /** Closes the socket and any fds of a half-received message; a pending call rejects. Idempotent. */
  close(reason?: VhostUserClientError): void {
    if (this.closedBy !== null) return
    this.closedBy = reason ?? new VhostUserClientError('EFRONTEND_CLOSED', 'the client was closed')
    this.poller.close()
    closeAll(this.rxFds)
    this.rxFds = []
    try { native.close(this.fd) } catch { /* already gone */ }
    const w = this.waiter
    this.waiter = null
    w?.reject(this.closedBy)
    this.onClose?.(this.closedBy)
  }

  private exchange(request: number, flags: number, payload: Uint8Array, fds: readonly number[], expectReply: boolean): Promise<Reply | null> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy)
    const reply = expectReply
      ? new Promise<Reply>((resolve, reject) => { this.waiter = { request, resolve, reject } })
      : null
    if (expectReply) this.poller.ref()
    try {
      this.send(encodeMessage(request, flags, payload), fds)
    } catch (err) {
      this.close(err instanceof VhostUserClientError
        ? err
        : new VhostUserClientError('EFRONTEND_CLOSED', `cannot send ${requestName(request)}: ${(err as Error).message}`, { cause: err }))
    }
    if (reply === null) return this.closedBy !== null ? Promise.reject(this.closedBy) : Promise.resolve(null)
    return reply.finally(() => { if (this.closedBy === null) this.poller.unref() })
  }

  /** Writes the whole message; the fds travel with its first byte (vhost-user.rst, "Communication"). */
  private send(bytes: Uint8Array, fds: readonly number[]): void {
    let sent = 0
    while (sent < bytes.length) {
      const n = native.sendMsg(this.fd, bytes, sent, bytes.length - sent, sent === 0 && fds.length > 0 ? [...fds] : undefined)
      // A control message is at most a few hundred bytes: a full socket buffer means the back-end stopped reading.
      if (n < 0) throw new VhostUserClientError('EFRONTEND_PROTOCOL', 'the back-end is not reading its socket')
      sent += n
    }
  }

  private onReadable(): void {
    try {
      for (;;) {
        const msg = this.readMessage()
        if (msg === null) return
        this.deliver(msg)
        if (this.closedBy !== null) return
      }
    } catch (err) {
      const e = err instanceof VhostUserClientError
        ? err
        : new VhostUserClientError('EFRONTEND_PROTOCOL', `bad message from the back-end: ${(err as Error).message}`, { cause: err })
      this.close(e)
    }
  }

  private deliver(msg: Reply): void {
    const w = this.waiter
    if (w === null) {
      closeAll(msg.fds)
      throw new VhostUserClientError('EFRONTEND_PROTOCOL', `unsolicited message ${requestName(msg.header.request)} from the back-end`)
    }
    if ((msg.header.flags & FLAG_REPLY) === 0 || msg.header.request !== w.request) {
      closeAll(msg.fds)
      throw new VhostUserClientError('EFRONTEND_PROTOCOL', `expected a reply to ${requestName(w.request)}, got ${requestName(msg.header.request)} flags 0x${msg.header.flags.toString(16)}`)
    }
    this.waiter = null
    w.resolve(msg)
  }

  /** Returns a whole message, or null when more bytes must arrive first. */
  private readMessage(): Reply | null {
    if (this.header === null) {
      if (!this.fill(this.headerBytes)) return null
      this.header = decodeHeader(this.headerBytes)
      this.payload = new Uint8Array(this.header.size)
      this.filled = 0
    }
    if (!this.fill(this.payload)) return null
    const msg = { header: this.header, payload: this.payload, fds: this.rxFds }
    this.header = null
    this.rxFds = []
    this.filled = 0
    return msg
  }

  /** Fills `buf` from the socket; true when full. EOF closes the channel. */
  private fill(buf: Uint8Array): boolean {
    while (this.filled < buf.length) {
      const r = native.recvMsg(this.fd, buf, this.filled, buf.length - this.filled)
      if (r === null) return false
      this.rxFds.push(...r.fds)
      if (this.rxFds.length > MAX_FDS) throw new VhostUserError('EVHOST_BAD_FDS', `more than ${MAX_FDS} fds with one message`)
      if (r.bytes === 0) {
        this.close(new VhostUserClientError('EFRONTEND_CLOSED', 'the back-end closed the connection'))
        return false
      }
      this.filled += r.bytes
    }
    return true
  }
}

/** Closes fds we will not use, ignoring errors. */
export function closeAll(fds: readonly number[]): void {
  for (const fd of fds) {
    try { native.close(fd) } catch { /* nothing to leak */ }
  }
}
