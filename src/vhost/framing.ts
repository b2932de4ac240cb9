/**
 * vhost-user stream framing, shared by both ends of the socket: reads a 12-byte header, then
 * exactly the payload it announces, collecting the fds (SCM_RIGHTS) that arrive meanwhile; and
 * writes a whole message with its fds on the first byte (vhost-user.rst, "Communication").
 *
 * Owns the bytes and fds of a half-read message until it is complete. Does not interpret
 * messages, and does not decide what a framing error means for the connection (its owner does).
 */
import * as native from '../native/index.js'
import { HEADER_SIZE, MAX_FDS, VhostUserError, decodeHeader, type MessageHeader } from './messages.js'

/** One whole message. Whoever receives it owns `fds`. */
export interface FramedMessage {
  header: MessageHeader
  payload: Uint8Array
  fds: number[]
}

/** Closes every fd in the list, ignoring errors: for fds nobody may keep. */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      native.close(fd)
    } catch {
      /* already closed: nothing to leak */
    }
  }
}

/** Incremental reader over a non-blocking socket. */
export class MessageReader {
  private readonly headerBytes = new Uint8Array(HEADER_SIZE)
  private header: MessageHeader | null = null
  private payload = new Uint8Array(0)
  private filled = 0
  private fds: number[] = []
  /** The peer closed the stream between two messages. */
  eof = false

  constructor(private readonly fd: number) {}

  /**
   * Reads what is available: a whole message, or null when more bytes must arrive first (or at
   * EOF, see `eof`). Throws VhostUserError for a bad header, too many fds, or EOF in the middle of
   * a message; native errno errors pass through.
   */
  read(): FramedMessage | null {
    if (this.header === null) {
      if (!this.fill(this.headerBytes)) return null
      this.header = decodeHeader(this.headerBytes)
      this.payload = new Uint8Array(this.header.size)
      this.filled = 0
    }
    if (!this.fill(this.payload)) return null
    const msg = { header: this.header, payload: this.payload, fds: this.fds }
    this.header = null
    this.fds = []
    this.filled = 0
    return msg
  }

  /** Closes the fds of a half-read message (the connection is going away). */
  discard(): void {
    closeFds(this.fds)
    this.fds = []
  }

  private fill(buf: Uint8Array): boolean {
    while (this.filled < buf.length) {
      const r = native.recvMsg(this.fd, buf, this.filled, buf.length - this.filled)
      if (r === null) return false
      if (r.fds.length > 0) {
        this.fds.push(...r.fds)
        if (this.fds.length > MAX_FDS) throw new VhostUserError('EVHOST_BAD_FDS', `more than ${MAX_FDS} fds attached to one message`)
      }
      if (r.bytes === 0) {
        if (this.header === null && this.filled === 0) {
          this.eof = true
          return false
        }
        throw new VhostUserError('EVHOST_TRUNCATED', 'connection closed in the middle of a message')
      }
      this.filled += r.bytes
    }
    return true
  }
}

/**
 * Writes a whole encoded message; the fds travel with its first byte. Returns false if the
 * socket buffer is full (a control message is a few hundred bytes: the peer stopped reading).
 */
export function writeMessage(fd: number, bytes: Uint8Array, fds: readonly number[]): boolean {
  let sent = 0
  while (sent < bytes.length) {
    const n = native.sendMsg(fd, bytes, sent, bytes.length - sent, sent === 0 && fds.length > 0 ? fds : undefined)
    if (n < 0) return false
    sent += n
  }
  return true
}
