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
import { MessageReader, closeFds, writeMessage, type FramedMessage } from '../vhost/framing.js'
import { FLAG_REPLY, encodeMessage, requestName } from '../vhost/messages.js'
import { VhostUserClientError } from './errors.js'

/** One message from the back-end. The receiver owns `fds`. */
export type Reply = FramedMessage

interface Waiter {
  request: number
  resolve(reply: Reply): void
  reject(err: Error): void
}

/** A connected control socket with in-order request/reply. */
export class ControlChannel {
  private readonly poller: native.Poller
  private readonly reader: MessageReader
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
    this.reader = new MessageReader(fd)
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
    this.reader.discard()
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

  /** Writes the whole message; the fds travel with its first byte. */
  private send(bytes: Uint8Array, fds: readonly number[]): void {
    // A control message is at most a few hundred bytes: a full socket buffer means the back-end stopped reading.
    if (!writeMessage(this.fd, bytes, fds)) throw new VhostUserClientError('EFRONTEND_PROTOCOL', 'the back-end is not reading its socket')
  }

  private onReadable(): void {
    try {
      for (;;) {
        const msg = this.reader.read()
        if (msg === null) {
          if (this.reader.eof) this.close(new VhostUserClientError('EFRONTEND_CLOSED', 'the back-end closed the connection'))
          return
        }
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
      closeFds(msg.fds)
      throw new VhostUserClientError('EFRONTEND_PROTOCOL', `unsolicited message ${requestName(msg.header.request)} from the back-end`)
    }
    if ((msg.header.flags & FLAG_REPLY) === 0 || msg.header.request !== w.request) {
      closeFds(msg.fds)
      throw new VhostUserClientError('EFRONTEND_PROTOCOL', `expected a reply to ${requestName(w.request)}, got ${requestName(msg.header.request)} flags 0x${msg.header.flags.toString(16)}`)
    }
    this.waiter = null
    w.resolve(msg)
  }
}
