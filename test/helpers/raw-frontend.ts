/**
 * A deliberately dumb vhost-user frontend for hostile-input tests: sends whatever bytes and fds
 * a test builds (valid or not) and reports what came back: a reply, or the server closing the
 * connection. The real client is src/frontend; this one exists to misbehave.
 */
import * as native from '../../src/native/index.js'
import {
  FLAG_NEED_REPLY, FrontendReq, HEADER_SIZE, ProtocolFeature, VERSION, VHOST_USER_F_PROTOCOL_FEATURES,
  decodeHeader, encodeMessage, encodeMemTable, encodeU64, featureBit, type MemRegion,
} from '../../src/vhost/messages.js'

/** What the server did after a message. */
export type Outcome = { kind: 'reply'; request: number; payload: Uint8Array } | { kind: 'closed' } | { kind: 'silent' }

/** Guest RAM for hostile tests: a memfd and a region describing it. */
export interface RawRam {
  fd: number
  region: MemRegion
}

/** Fake frontend virtual address space base (the backend only translates with it). */
export const RAW_UVA = 0x7e00_0000_0000

/** Creates a memfd of `size` bytes and its region at gpa 0. */
export function rawRam(size: number): RawRam {
  const fd = native.memfdCreate('vub-raw', size)
  return { fd, region: { gpa: 0, size, uva: RAW_UVA, mmapOffset: 0 } }
}

/** One raw connection. */
export class RawFrontend {
  private buf = new Uint8Array(0)
  private eof = false

  private constructor(readonly fd: number) {}

  static connect(socketPath: string): RawFrontend {
    return new RawFrontend(native.unixConnect(socketPath))
  }

  /** Sends raw bytes with fds attached to the first byte. */
  sendBytes(bytes: Uint8Array, fds: readonly number[] = []): void {
    let sent = 0
    while (sent < bytes.length) {
      const n = native.sendMsg(this.fd, bytes, sent, bytes.length - sent, sent === 0 ? fds : undefined)
      if (n < 0) throw new Error('socket full')
      sent += n
    }
  }

  /** Sends one well-framed message. */
  send(request: number, payload: Uint8Array = new Uint8Array(0), fds: readonly number[] = [], flags = VERSION): void {
    this.sendBytes(encodeMessage(request, flags, payload), fds)
  }

  /** Waits up to `ms` for a whole reply or the connection closing. */
  async outcome(ms = 2000): Promise<Outcome> {
    const deadline = Date.now() + ms
    for (;;) {
      this.pump()
      if (this.buf.length >= HEADER_SIZE) {
        const h = decodeHeader(this.buf)
        if (this.buf.length >= HEADER_SIZE + h.size) {
          const payload = this.buf.slice(HEADER_SIZE, HEADER_SIZE + h.size)
          this.buf = this.buf.slice(HEADER_SIZE + h.size)
          return { kind: 'reply', request: h.request, payload }
        }
      }
      if (this.eof) return { kind: 'closed' }
      if (Date.now() > deadline) return { kind: 'silent' }
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  /** Sends a request that has a reply and returns the reply payload (throws on anything else). */
  async call(request: number, payload?: Uint8Array, fds: readonly number[] = [], flags = VERSION): Promise<Uint8Array> {
    this.send(request, payload, fds, flags)
    const o = await this.outcome()
    if (o.kind !== 'reply') throw new Error(`expected a reply to ${request}, got ${o.kind}`)
    return o.payload
  }

  /**
   * The start of QEMU's sequence: features (PROTOCOL_FEATURES + VERSION_1, and REPLY_ACK when
   * `replyAck`), owner, and a memory table over `ram`.
   */
  async handshake(ram: RawRam, replyAck = false): Promise<void> {
    const offered = new DataView((await this.call(FrontendReq.GET_FEATURES)).buffer).getBigUint64(0, true)
    const protocol = new DataView((await this.call(FrontendReq.GET_PROTOCOL_FEATURES)).buffer).getBigUint64(0, true)
    const wantedProtocol = featureBit(ProtocolFeature.CONFIG) | (replyAck ? featureBit(ProtocolFeature.REPLY_ACK) : 0n)
    this.send(FrontendReq.SET_PROTOCOL_FEATURES, encodeU64(protocol & wantedProtocol))
    this.send(FrontendReq.SET_OWNER)
    this.send(FrontendReq.SET_FEATURES, encodeU64(offered & (featureBit(32) | featureBit(VHOST_USER_F_PROTOCOL_FEATURES))))
    this.send(FrontendReq.SET_MEM_TABLE, encodeMemTable([ram.region]), [ram.fd], replyAck ? VERSION | FLAG_NEED_REPLY : VERSION)
    if (replyAck) {
      const ack = await this.outcome()
      if (ack.kind !== 'reply') throw new Error(`SET_MEM_TABLE: ${ack.kind}`)
    }
  }

  close(): void {
    try {
      native.close(this.fd)
    } catch {
      /* already closed */
    }
  }

  private pump(): void {
    if (this.eof) return
    const chunk = new Uint8Array(4096)
    for (;;) {
      let r: native.RecvResult | null
      try {
        r = native.recvMsg(this.fd, chunk, 0, chunk.length)
      } catch {
        this.eof = true
        return
      }
      if (r === null) return
      for (const fd of r.fds) native.close(fd)
      if (r.bytes === 0) {
        this.eof = true
        return
      }
      const next = new Uint8Array(this.buf.length + r.bytes)
      next.set(this.buf)
      next.set(chunk.subarray(0, r.bytes), this.buf.length)
      this.buf = next
    }
  }
}
