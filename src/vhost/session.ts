/**
 * The backend's protocol state machine for one frontend connection: negotiation, the memory
 * table, per-ring messages, config space, reset and teardown. One dispatch switch, as in
 * libvhost-user; each failure names the frontend's mistake.
 *
 * Failure policy (STYLE.md §3): a message that is malformed or cannot be honoured raises a
 * VhostUserError. If REPLY_ACK was negotiated and the message asked for a reply, the frontend
 * gets a NACK and the connection lives on; otherwise the connection is closed with the reason
 * logged. Fds attached to a message that does not keep them are closed at once.
 */
import type { Logger } from 'pino'
import type { GuestMemory } from '../virtqueue/index.js'
import { Connection, type IncomingMessage } from './connection.js'
import { closeFds } from './framing.js'
import type { VhostUserDevice } from './device.js'
import { mapRegions, unmapWindow, type SentRegion } from './memory-table.js'
import {
  FLAG_NEED_REPLY, FLAG_REPLY, FrontendReq, ProtocolFeature, VERSION, VHOST_USER_F_PROTOCOL_FEATURES,
  VhostUserError, decodeConfig, decodeMemTable, decodeSingleMemRegion, decodeU64, decodeVringAddr,
  decodeVringFd, decodeVringState, encodeConfig, encodeU64, encodeVringState, featureBit, hasFeature,
  requestName, validateMessage,
} from './messages.js'
import { MAX_VRING_SIZE, Vring } from './vring.js'

/** Memory slots offered with CONFIGURE_MEM_SLOTS (libvhost-user and rust-vmm offer the same). */
export const MAX_MEM_SLOTS = 509

/** Protocol features the engine itself implements; the device adds its own (CONFIG). */
const ENGINE_PROTOCOL_FEATURES =
  featureBit(ProtocolFeature.MQ) |
  featureBit(ProtocolFeature.REPLY_ACK) |
  featureBit(ProtocolFeature.BACKEND_REQ) |
  featureBit(ProtocolFeature.CONFIGURE_MEM_SLOTS) |
  featureBit(ProtocolFeature.RESET_DEVICE) |
  featureBit(ProtocolFeature.STATUS)

/** virtio 1.2 §2.7: EVENT_IDX is bit 29 of the feature word. */
const VIRTIO_RING_F_EVENT_IDX = 29

/** Requests that always answer with their own payload (NEED_REPLY does not add an ack). */
const HAS_OWN_REPLY = new Set<number>([
  FrontendReq.GET_FEATURES, FrontendReq.GET_PROTOCOL_FEATURES, FrontendReq.GET_VRING_BASE,
  FrontendReq.GET_QUEUE_NUM, FrontendReq.GET_CONFIG, FrontendReq.GET_MAX_MEM_SLOTS, FrontendReq.GET_STATUS,
])

const EMPTY = new Uint8Array(0)

/** One connected frontend. */
export class Session {
  private readonly conn: Connection
  private readonly vrings: Vring[]
  private readonly offeredFeatures: bigint
  private readonly offeredProtocolFeatures: bigint
  private features = 0n
  private protocolFeatures = 0n
  private regions: SentRegion[] = []
  private mem: GuestMemory | null = null
  private backendReqFd = -1
  private status = 0
  /** A device that can no longer serve a ring: the connection closes with the reason logged. */
  private readonly failRing = (reason: Error): void => {
    this.log.error({ err: reason }, 'closing connection: the device failed a queue')
    this.conn.close(reason)
  }

  /**
   * Takes ownership of the connected socket `fd`. `onEnd` runs once the connection is gone and
   * every ring has drained, memory is unmapped and every fd the frontend sent is closed.
   */
  constructor(
    fd: number,
    private readonly device: VhostUserDevice,
    private readonly log: Logger,
    private readonly onEnd: () => void,
  ) {
    this.offeredFeatures = device.features | featureBit(VHOST_USER_F_PROTOCOL_FEATURES)
    this.offeredProtocolFeatures = ENGINE_PROTOCOL_FEATURES | device.protocolFeatures
    this.vrings = Array.from({ length: device.numQueues }, (_, i) => this.newVring(i))
    this.conn = new Connection(fd, {
      onMessage: (msg) => this.onMessage(msg),
      onClose: (reason) => this.onClose(reason),
    })
  }

  /** Closes the connection (server shutdown); teardown follows as for a disconnect. */
  close(): void {
    this.conn.close(null)
  }

  private newVring(index: number): Vring {
    return new Vring(index, this.device, this.failRing)
  }

  private onMessage(msg: IncomingMessage): void | Promise<void> {
    const { header } = msg
    let result: Uint8Array | void | Promise<Uint8Array | void>
    try {
      validateMessage(header, msg.payload, msg.fds.length)
      result = this.dispatch(msg)
    } catch (err) {
      this.fail(msg, err)
      return
    }
    if (result instanceof Promise) {
      return result.then(
        (reply) => this.succeed(msg, reply),
        (err) => this.fail(msg, err),
      )
    }
    this.succeed(msg, result)
  }

  private succeed(msg: IncomingMessage, reply: Uint8Array | void): void {
    closeFds(msg.fds.filter((fd) => fd >= 0))
    const { request } = msg.header
    if (reply !== undefined) {
      this.conn.send(request, VERSION | FLAG_REPLY, reply)
    } else if (this.ackRequested(msg)) {
      this.conn.send(request, VERSION | FLAG_REPLY, encodeU64(0n))
    }
  }

  private fail(msg: IncomingMessage, err: unknown): void {
    closeFds(msg.fds.filter((fd) => fd >= 0))
    const name = requestName(msg.header.request)
    const e = err as Error & { code?: string }
    if (!(err instanceof VhostUserError)) {
      this.log.error({ err: e, request: name }, 'internal error while handling a vhost-user message')
    }
    if (this.ackRequested(msg)) {
      this.log.warn({ request: name, code: e.code, reason: e.message }, 'vhost-user request refused')
      this.conn.send(msg.header.request, VERSION | FLAG_REPLY, encodeU64(1n))
      return
    }
    this.log.error({ request: name, code: e.code, reason: e.message }, 'closing connection: bad vhost-user message')
    this.conn.close(e)
  }

  private ackRequested(msg: IncomingMessage): boolean {
    return (
      (msg.header.flags & FLAG_NEED_REPLY) !== 0 &&
      hasFeature(this.protocolFeatures, ProtocolFeature.REPLY_ACK) &&
      !HAS_OWN_REPLY.has(msg.header.request)
    )
  }

  /** Takes the message's only fd (ownership passes to the caller). */
  private takeFd(msg: IncomingMessage, i = 0): number {
    const fd = msg.fds[i]
    msg.fds[i] = -1
    return fd
  }

  private vring(index: number): Vring {
    const vring = this.vrings[index]
    if (vring === undefined) {
      throw new VhostUserError('EVHOST_BAD_INDEX', `vring index ${index} is out of range (device has ${this.vrings.length} queues)`)
    }
    return vring
  }

  private dispatch(msg: IncomingMessage): Uint8Array | void | Promise<Uint8Array | void> {
    const { payload } = msg
    switch (msg.header.request) {
      case FrontendReq.GET_FEATURES:
        return encodeU64(this.offeredFeatures)
      case FrontendReq.SET_FEATURES:
        return this.setFeatures(decodeU64(payload))
      case FrontendReq.SET_OWNER:
        return
      case FrontendReq.RESET_OWNER:
      case FrontendReq.RESET_DEVICE:
        return this.reset()
      case FrontendReq.GET_PROTOCOL_FEATURES:
        return encodeU64(this.offeredProtocolFeatures)
      case FrontendReq.SET_PROTOCOL_FEATURES: {
        const wanted = decodeU64(payload)
        if ((wanted & ~this.offeredProtocolFeatures) !== 0n) {
          throw new VhostUserError('EVHOST_BAD_FEATURES', `protocol features 0x${wanted.toString(16)} include bits never offered`)
        }
        this.protocolFeatures = wanted
        return
      }
      case FrontendReq.GET_QUEUE_NUM:
        return encodeU64(BigInt(this.vrings.length))
      case FrontendReq.SET_MEM_TABLE: {
        const specs = decodeMemTable(payload)
        const sent = specs.map((spec, i) => ({ spec, fd: this.takeFd(msg, i) }))
        return this.replaceMemory(sent, this.regions)
      }
      case FrontendReq.GET_MAX_MEM_SLOTS:
        return encodeU64(BigInt(MAX_MEM_SLOTS))
      case FrontendReq.ADD_MEM_REG: {
        if (this.regions.length >= MAX_MEM_SLOTS) throw new VhostUserError('EVHOST_BAD_REGION', `all ${MAX_MEM_SLOTS} memory slots are in use`)
        const spec = decodeSingleMemRegion(payload)
        return this.replaceMemory([...this.regions, { spec, fd: this.takeFd(msg) }], [])
      }
      case FrontendReq.REM_MEM_REG: {
        const spec = decodeSingleMemRegion(payload)
        const gone = this.regions.find((r) => r.spec.gpa === spec.gpa && r.spec.size === spec.size && r.spec.uva === spec.uva)
        if (gone === undefined) {
          throw new VhostUserError('EVHOST_BAD_REGION', `no memory region at gpa 0x${spec.gpa.toString(16)} size 0x${spec.size.toString(16)} to remove`)
        }
        return this.replaceMemory(this.regions.filter((r) => r !== gone), [gone])
      }
      case FrontendReq.SET_VRING_NUM: {
        const { index, num } = decodeVringState(payload)
        const vring = this.vring(index)
        // virtio 1.2 §2.7: Queue Size is a power of 2, at most 32768.
        if (num === 0 || num > MAX_VRING_SIZE || (num & (num - 1)) !== 0) {
          throw new VhostUserError('EVHOST_BAD_RING', `vring ${index}: size ${num} is not a power of 2 in 1..${MAX_VRING_SIZE}`)
        }
        if (vring.started) throw new VhostUserError('EVHOST_BAD_STATE', `vring ${index}: size changed while the ring is started`)
        vring.num = num
        return
      }
      case FrontendReq.SET_VRING_ADDR: {
        const addr = decodeVringAddr(payload)
        const vring = this.vring(addr.index)
        if (vring.started) throw new VhostUserError('EVHOST_BAD_STATE', `vring ${addr.index}: addresses changed while the ring is started`)
        if (this.mem !== null) {
          for (const uva of [addr.descUva, addr.availUva, addr.usedUva]) {
            if (this.mem.uvaToGpa(uva) < 0) {
              throw new VhostUserError('EVHOST_BAD_RING', `vring ${addr.index}: address 0x${uva.toString(16)} is outside guest memory`)
            }
          }
        }
        vring.addr = addr
        return
      }
      case FrontendReq.SET_VRING_BASE: {
        const { index, num } = decodeVringState(payload)
        const vring = this.vring(index)
        if (num > 0xffff) throw new VhostUserError('EVHOST_BAD_PAYLOAD', `vring ${index}: base ${num} does not fit 16 bits`)
        if (vring.started) throw new VhostUserError('EVHOST_BAD_STATE', `vring ${index}: base changed while the ring is started`)
        vring.base = num
        return
      }
      case FrontendReq.GET_VRING_BASE: {
        const { index } = decodeVringState(payload)
        const vring = this.vring(index)
        return vring.stop().then(() => {
          this.log.info({ vring: index, base: vring.base }, 'queue stopped')
          return encodeVringState({ index, num: vring.base })
        })
      }
      case FrontendReq.SET_VRING_KICK:
        return this.setKick(msg)
      case FrontendReq.SET_VRING_CALL: {
        const { index, noFd } = decodeVringFd(payload)
        return this.vring(index).setCallFd(noFd ? -1 : this.takeFd(msg))
      }
      case FrontendReq.SET_VRING_ERR: {
        const { index, noFd } = decodeVringFd(payload)
        this.vring(index).setErrFd(noFd ? -1 : this.takeFd(msg))
        return
      }
      case FrontendReq.SET_VRING_ENABLE: {
        const { index, num } = decodeVringState(payload)
        const vring = this.vring(index)
        if (num > 1) throw new VhostUserError('EVHOST_BAD_PAYLOAD', `vring ${index}: enable flag ${num} is neither 0 nor 1`)
        const wasRunning = vring.running
        const logStart = (): void => {
          if (!wasRunning && vring.running) this.log.info({ vring: index, size: vring.num }, 'queue started')
        }
        const enabled = vring.setEnabled(num === 1)
        if (enabled !== undefined) return enabled.then(logStart)
        logStart()
        return
      }
      case FrontendReq.SET_BACKEND_REQ_FD:
        if (this.backendReqFd >= 0) closeFds([this.backendReqFd])
        this.backendReqFd = this.takeFd(msg)
        return
      case FrontendReq.GET_CONFIG: {
        const req = decodeConfig(payload)
        const data = this.device.getConfig(req.offset, req.size)
        // vhost-user.rst: a zero-length payload tells the frontend the read failed.
        if (data === null) return EMPTY
        return encodeConfig({ offset: req.offset, flags: req.flags, data })
      }
      case FrontendReq.SET_CONFIG: {
        const req = decodeConfig(payload)
        if (!this.device.setConfig(req.offset, req.data, req.flags)) {
          throw new VhostUserError('EVHOST_BAD_CONFIG', `config write of ${req.size} bytes at offset ${req.offset} is not allowed`)
        }
        return
      }
      case FrontendReq.SET_STATUS:
        this.status = Number(decodeU64(payload) & 0xffn)
        return
      case FrontendReq.GET_STATUS:
        return encodeU64(BigInt(this.status))
      default:
        throw new VhostUserError('EVHOST_UNSUPPORTED', `${requestName(msg.header.request)} is not supported by this backend`)
    }
  }

  private setFeatures(features: bigint): void {
    if ((features & ~this.offeredFeatures) !== 0n) {
      throw new VhostUserError('EVHOST_BAD_FEATURES', `features 0x${features.toString(16)} include bits never offered`)
    }
    this.features = features
    this.device.setFeatures(features)
    // vhost-user.rst: without PROTOCOL_FEATURES rings start enabled; with it, SET_VRING_ENABLE decides.
    if (!hasFeature(features, VHOST_USER_F_PROTOCOL_FEATURES)) {
      for (const vring of this.vrings) vring.enabled = true
    }
    this.log.info({ features: `0x${features.toString(16)}`, protocolFeatures: `0x${this.protocolFeatures.toString(16)}` }, 'features negotiated')
  }

  private setKick(msg: IncomingMessage): Promise<void> | void {
    const { index, noFd } = decodeVringFd(msg.payload)
    const vring = this.vring(index)
    if (noFd) {
      throw new VhostUserError('EVHOST_UNSUPPORTED', `vring ${index}: polling mode (kick without an fd) is not supported`)
    }
    const replaced = vring.setKickFd(this.takeFd(msg))
    if (vring.started) return replaced
    if (!vring.canStart(this.mem)) {
      throw new VhostUserError('EVHOST_BAD_STATE', `vring ${index}: kick fd sent before its size, addresses and memory table`)
    }
    vring.start(this.mem, this.regionFds(), hasFeature(this.features, VIRTIO_RING_F_EVENT_IDX))
    if (vring.running) this.log.info({ vring: index, size: vring.num }, 'queue started')
  }

  /** The fd of each region of the current table, in `mem.regions` order. */
  private regionFds(): number[] {
    return this.regions.map((r) => r.fd)
  }

  /**
   * Swaps in a new memory table: maps it first (a bad table changes nothing), then suspends the
   * running rings until their requests drain, unmaps the old table, closes `retired` fds and
   * restarts the rings over the new memory.
   */
  private async replaceMemory(next: SentRegion[], retired: readonly SentRegion[]): Promise<void> {
    let mem: GuestMemory
    try {
      mem = mapRegions(next)
    } catch (err) {
      // The new fds are ours to close; the old table stays in force.
      closeFds(next.filter((r) => !this.regions.includes(r)).map((r) => r.fd))
      throw err
    }
    const restart: Array<{ vring: Vring; nextUsed: number }> = []
    for (const vring of this.vrings) {
      if (vring.started) restart.push({ vring, nextUsed: await vring.suspend() })
    }
    this.mem?.dispose(unmapWindow)
    closeFds(retired.map((r) => r.fd))
    this.regions = next
    this.mem = mem
    this.log.info({ regions: next.length, bytes: next.reduce((n, r) => n + r.spec.size, 0) }, 'memory table set')
    const eventIdx = hasFeature(this.features, VIRTIO_RING_F_EVENT_IDX)
    const fds = this.regionFds()
    for (const { vring, nextUsed } of restart) {
      try {
        vring.start(mem, fds, eventIdx, nextUsed)
      } catch (err) {
        this.log.error({ vring: vring.index, reason: (err as Error).message }, 'queue not restarted after a memory table change')
      }
    }
  }

  /** RESET_DEVICE / RESET_OWNER: rings stopped and forgotten, negotiated features cleared. */
  private async reset(): Promise<void> {
    for (const vring of this.vrings) await vring.stop()
    for (const [i, vring] of this.vrings.entries()) {
      vring.dispose()
      this.vrings[i] = this.newVring(i)
    }
    this.features = 0n
    this.status = 0
    this.device.reset()
    this.log.info('device reset')
  }

  private onClose(reason: Error | null): void {
    if (reason === null) this.log.info('frontend disconnected')
    else this.log.warn({ reason: reason.message, code: (reason as Error & { code?: string }).code }, 'frontend connection closed')
    this.releaseAll().then(this.onEnd, (err) => {
      this.log.error({ err }, 'teardown failed')
      this.onEnd()
    })
  }

  /** Drains every ring, then unmaps memory and closes every fd the frontend sent. */
  private async releaseAll(): Promise<void> {
    for (const vring of this.vrings) await vring.stop()
    for (const vring of this.vrings) vring.dispose()
    this.mem?.dispose(unmapWindow)
    this.mem = null
    closeFds(this.regions.map((r) => r.fd))
    this.regions = []
    if (this.backendReqFd >= 0) closeFds([this.backendReqFd])
    this.backendReqFd = -1
    this.device.reset()
  }
}
