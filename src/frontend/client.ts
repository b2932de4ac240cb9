/**
 * VhostUserBlkClient: a userspace vhost-user-blk front-end (the role QEMU plays). It connects to
 * any vhost-user-blk back-end, performs the handshake QEMU 7.2's vhost-user-blk-pci performs,
 * shares memfd "guest RAM", sets up split virtqueues and submits virtio-blk requests laid out as
 * Linux's virtio_blk lays them out. Used by tests, by `bench`, and by anyone who wants to drive a
 * back-end without a VM.
 *
 * Handshake (hw/virtio/vhost-user.c + hw/block/vhost-user-blk.c): GET_FEATURES,
 * GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM (with MQ), SET_OWNER, GET_CONFIG,
 * SET_FEATURES, SET_MEM_TABLE (or GET_MAX_MEM_SLOTS + ADD_MEM_REG per region), then per queue SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR,
 * SET_VRING_KICK, SET_VRING_CALL, and finally SET_VRING_ENABLE for every queue. With REPLY_ACK
 * negotiated every request without a reply of its own carries NEED_REPLY, so each failure is
 * reported at the request that caused it.
 *
 * Owns: the control channel, the guest RAM, the queues and every fd it created; close() releases
 * all of them. Does not own: ring mechanics (virtqueue), wire format (vhost/messages.ts).
 */
import * as native from '../native/index.js'
import {
  VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, BLK_CONFIG_SIZE, decodeBlkConfig, type BlkConfig,
} from '../blk/spec.js'
import {
  CONFIG_HEADER_SIZE, CONFIG_TYPE_FRONTEND, FLAG_NEED_REPLY, FrontendReq, ProtocolFeature, U64_SIZE, VERSION,
  VHOST_USER_F_PROTOCOL_FEATURES, VRING_STATE_SIZE, decodeConfig, decodeU64, decodeVringState, encodeConfig,
  encodeMemTable, encodeSingleMemRegion, encodeU64, encodeVringAddr, encodeVringFd, encodeVringState, featureBit, hasFeature, requestName,
} from '../vhost/messages.js'
import {
  DESC_SIZE, MAX_QUEUE_SIZE, SplitQueueDriver, availRingBytes, descTableBytes, usedRingBytes, type DriverSegment,
} from '../virtqueue/index.js'
import {
  STATUS_NOT_WRITTEN, checkDataLength, decodeId, idBuffer, outHeader, rangesBuffer, statusBuffer, type SectorRange,
} from './blk-request.js'
import { closeFds } from '../vhost/framing.js'
import { ControlChannel, type Reply } from './channel.js'
import { VhostUserClientError } from './errors.js'
import { GuestRam } from './guest-ram.js'
import { ClientQueue, type ChainBuffer, type Completion, type RingLease, type RingOwner } from './queue.js'

/** Connection options. */
export interface ClientOptions {
  /** The back-end's listening Unix socket. */
  socketPath: string
  /** Queues to set up. Default: every queue the back-end offers (GET_QUEUE_NUM and config num_queues). */
  numQueues?: number
  /** Descriptors per queue, a power of two, 4..32768 (default 128). */
  queueSize?: number
  /** Bytes of shared guest RAM (default 64 MiB). */
  memorySize?: number
  /** Split guest RAM into this many regions, 1..8, with guest-physical holes between them (default 1). */
  regions?: number
  /** Negotiate VIRTIO_RING_F_EVENT_IDX when offered (default true). */
  eventIdx?: boolean
  /** Negotiate VIRTIO_RING_F_INDIRECT_DESC when offered and use it for requests (default true). */
  indirect?: boolean
  /** Negotiate VHOST_USER_PROTOCOL_F_REPLY_ACK when offered (default true). */
  replyAck?: boolean
  /**
   * Negotiate VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS when offered and describe guest RAM with
   * GET_MAX_MEM_SLOTS + one ADD_MEM_REG per region, as QEMU does when it has the feature, instead
   * of SET_MEM_TABLE (default false).
   */
  memSlots?: boolean
  /** Virtio features never to ack (ANDed with the features this client knows). Default: all bits. */
  featureMask?: bigint
}

/** Options of a raw submission. */
export interface RawOptions {
  /** Use an indirect table (default: what block requests use). */
  indirect?: boolean
  /** Reject with EFRONTEND_TIMEOUT after this many ms (default: never). */
  timeoutMs?: number
}

/** Options of a raw control message. */
export interface RequestOptions {
  /** fds to attach (they stay the caller's). */
  fds?: readonly number[]
  /** Header flags (default: VERSION). */
  flags?: number
  /** Wait for a reply (default: when the request has its own reply, or flags ask for one). */
  reply?: boolean
}

/** Virtio features this client can drive (QEMU's vhost-user-blk user_feature_bits, minus packed/IOMMU). */
const KNOWN_FEATURES = [
  VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_F_VERSION_1,
].reduce((acc, bit) => acc | featureBit(bit), 0n)

/** Requests whose reply payload is defined by the spec (NEED_REPLY adds nothing to them). */
const HAS_OWN_REPLY = new Set<number>([
  FrontendReq.GET_FEATURES, FrontendReq.GET_PROTOCOL_FEATURES, FrontendReq.GET_VRING_BASE, FrontendReq.GET_QUEUE_NUM,
  FrontendReq.GET_CONFIG, FrontendReq.GET_INFLIGHT_FD, FrontendReq.GET_MAX_MEM_SLOTS, FrontendReq.GET_STATUS,
  FrontendReq.POSTCOPY_ADVISE, FrontendReq.POSTCOPY_END, FrontendReq.IOTLB_MSG, FrontendReq.GET_SHARED_OBJECT,
  FrontendReq.SET_DEVICE_STATE_FD, FrontendReq.CHECK_DEVICE_STATE,
])

const DEFAULT_QUEUE_SIZE = 128
const DEFAULT_MEMORY_SIZE = 64 << 20
/** Ring areas are page aligned, as a guest driver allocates them. */
const RING_ALIGN = 4096

/** A connected, ready vhost-user-blk front-end. */
export class VhostUserBlkClient {
  /** The device config read at connect time (GET_CONFIG of BLK_CONFIG_SIZE bytes). */
  readonly config: BlkConfig
  /** The virtio features acked with SET_FEATURES. */
  readonly features: bigint
  /** The protocol features acked with SET_PROTOCOL_FEATURES. */
  readonly protocolFeatures: bigint
  /** Number of queues set up. */
  readonly numQueues: number
  /** Shared guest RAM (its `memory` allows inspecting and crafting buffers for raw submissions). */
  readonly guest: GuestRam
  private readonly channel: ControlChannel
  private readonly queues: ClientQueue[]
  private readonly useIndirect: boolean
  /** Largest data segment (0: no limit but the descriptor's u32). */
  private readonly maxSegment: number
  /** Most data segments per request. */
  private readonly maxDataSegments: number
  private closing: Promise<void> | null = null

  private constructor(s: {
    channel: ControlChannel; guest: GuestRam; queues: ClientQueue[]; config: BlkConfig; features: bigint
    protocolFeatures: bigint; useIndirect: boolean; maxSegment: number; maxDataSegments: number
  }) {
    this.channel = s.channel
    this.guest = s.guest
    this.queues = s.queues
    this.config = s.config
    this.features = s.features
    this.protocolFeatures = s.protocolFeatures
    this.numQueues = s.queues.length
    this.useIndirect = s.useIndirect
    this.maxSegment = s.maxSegment
    this.maxDataSegments = s.maxDataSegments
  }

  /**
   * Connects and performs the whole handshake; resolves once every queue is enabled. Throws
   * VhostUserClientError (EFRONTEND_ARGUMENT, EFRONTEND_FEATURES, EFRONTEND_PROTOCOL,
   * EFRONTEND_NACK, EFRONTEND_CLOSED) or the native connect error (ENOENT, ECONNREFUSED);
   * everything created so far is released on failure.
   */
  static async connect(opts: ClientOptions): Promise<VhostUserBlkClient> {
    const queueSize = opts.queueSize ?? DEFAULT_QUEUE_SIZE
    // A data request needs three descriptors (header, data, status), so 4 is the smallest useful ring.
    if (!Number.isInteger(queueSize) || queueSize < 4 || queueSize > MAX_QUEUE_SIZE || (queueSize & (queueSize - 1)) !== 0) {
      throw new VhostUserClientError('EFRONTEND_ARGUMENT', `queue size ${queueSize} is not a power of 2 in 4..${MAX_QUEUE_SIZE}`)
    }
    const guest = GuestRam.create(opts.memorySize ?? DEFAULT_MEMORY_SIZE, opts.regions ?? 1)
    let channel: ControlChannel | null = null
    const queues: ClientQueue[] = []
    const fds: number[] = []
    try {
      channel = ControlChannel.connect(opts.socketPath)
      // The back-end going away fails every queued request too.
      channel.onClose = (reason) => { for (const q of queues) q.close(reason) }
      const h = new Handshake(channel)

      const offered = await h.getU64(FrontendReq.GET_FEATURES)
      if (!hasFeature(offered, VIRTIO_F_VERSION_1)) throw new VhostUserClientError('EFRONTEND_FEATURES', 'the back-end does not offer VIRTIO_F_VERSION_1')
      if (!hasFeature(offered, VHOST_USER_F_PROTOCOL_FEATURES)) {
        throw new VhostUserClientError('EFRONTEND_FEATURES', 'the back-end does not offer VHOST_USER_F_PROTOCOL_FEATURES (needed for GET_CONFIG)')
      }
      const offeredProto = await h.getU64(FrontendReq.GET_PROTOCOL_FEATURES)
      if (!hasFeature(offeredProto, ProtocolFeature.CONFIG)) {
        throw new VhostUserClientError('EFRONTEND_FEATURES', 'the back-end does not offer VHOST_USER_PROTOCOL_F_CONFIG')
      }
      let wantedProto = featureBit(ProtocolFeature.MQ) | featureBit(ProtocolFeature.CONFIG)
      if (opts.replyAck !== false) wantedProto |= featureBit(ProtocolFeature.REPLY_ACK)
      if (opts.memSlots === true) wantedProto |= featureBit(ProtocolFeature.CONFIGURE_MEM_SLOTS)
      const protocolFeatures = offeredProto & wantedProto
      await h.set(FrontendReq.SET_PROTOCOL_FEATURES, encodeU64(protocolFeatures))
      h.replyAck = hasFeature(protocolFeatures, ProtocolFeature.REPLY_ACK)
      const backendQueues = hasFeature(protocolFeatures, ProtocolFeature.MQ) ? Number(await h.getU64(FrontendReq.GET_QUEUE_NUM)) : Infinity
      await h.set(FrontendReq.SET_OWNER, new Uint8Array(0))
      const config = decodeBlkConfig(await h.getConfig(0, BLK_CONFIG_SIZE))

      let wanted = KNOWN_FEATURES & (opts.featureMask ?? ~0n)
      if (opts.eventIdx !== false) wanted |= featureBit(VIRTIO_RING_F_EVENT_IDX)
      if (opts.indirect !== false) wanted |= featureBit(VIRTIO_RING_F_INDIRECT_DESC)
      const features = (offered & wanted) | featureBit(VHOST_USER_F_PROTOCOL_FEATURES)

      const available = Math.min(backendQueues, hasFeature(features, VIRTIO_BLK_F_MQ) ? config.numQueues : 1)
      const numQueues = opts.numQueues ?? available
      if (!Number.isInteger(numQueues) || numQueues < 1 || numQueues > available) {
        throw new VhostUserClientError('EFRONTEND_ARGUMENT', `${opts.numQueues} queues requested, the back-end offers ${available}`)
      }
      const useIndirect = hasFeature(features, VIRTIO_RING_F_INDIRECT_DESC)
      const eventIdx = hasFeature(features, VIRTIO_RING_F_EVENT_IDX)
      // virtio 1.2 §5.2.4: size_max and seg_max only mean something when negotiated; 0 means "no limit" (qsd sends 0).
      const maxSegment = hasFeature(features, VIRTIO_BLK_F_SIZE_MAX) ? config.sizeMax : 0
      const chainLimit = queueSize - 2
      const segMax = hasFeature(features, VIRTIO_BLK_F_SEG_MAX) && config.segMax > 0 ? config.segMax : chainLimit
      const maxDataSegments = Math.min(segMax, chainLimit)

      await h.set(FrontendReq.SET_FEATURES, encodeU64(features))
      if (hasFeature(protocolFeatures, ProtocolFeature.CONFIGURE_MEM_SLOTS)) {
        const slots = await h.getU64(FrontendReq.GET_MAX_MEM_SLOTS)
        if (slots < BigInt(guest.regions.length)) {
          throw new VhostUserClientError('EFRONTEND_FEATURES', `the back-end has ${slots} memory slots, ${guest.regions.length} needed`)
        }
        for (const region of guest.regions) await h.set(FrontendReq.ADD_MEM_REG, encodeSingleMemRegion(region), [guest.fd])
      } else {
        await h.set(FrontendReq.SET_MEM_TABLE, encodeMemTable(guest.regions), guest.regions.map(() => guest.fd))
      }

      for (let index = 0; index < numQueues; index++) {
        const ring = placeRing(guest, queueSize, useIndirect ? maxDataSegments + 2 : 0)
        const driver = new SplitQueueDriver(guest.memory, { size: queueSize, eventIdx, ...ring.driver })
        const kickFd = native.eventfdCreate()
        fds.push(kickFd)
        const callFd = native.eventfdCreate()
        fds.push(callFd)
        await h.set(FrontendReq.SET_VRING_NUM, encodeVringState({ index, num: queueSize }))
        await h.set(FrontendReq.SET_VRING_BASE, encodeVringState({ index, num: 0 }))
        await h.set(FrontendReq.SET_VRING_ADDR, encodeVringAddr({
          index, flags: 0, descUva: guest.uvaOf(ring.driver.descGpa), usedUva: guest.uvaOf(ring.driver.usedGpa),
          availUva: guest.uvaOf(ring.driver.availGpa), logGpa: 0,
        }))
        await h.set(FrontendReq.SET_VRING_KICK, encodeVringFd({ index, noFd: false }), [kickFd])
        await h.set(FrontendReq.SET_VRING_CALL, encodeVringFd({ index, noFd: false }), [callFd])
        fds.splice(fds.indexOf(kickFd), 1)
        fds.splice(fds.indexOf(callFd), 1)
        queues.push(new ClientQueue(index, guest, driver, kickFd, callFd))
      }
      // vhost-user.rst "Ring states": with VHOST_USER_F_PROTOCOL_FEATURES rings start disabled.
      for (let index = 0; index < numQueues; index++) {
        await h.set(FrontendReq.SET_VRING_ENABLE, encodeVringState({ index, num: 1 }))
      }
      return new VhostUserBlkClient({
        channel, guest, queues, config, features, protocolFeatures, useIndirect, maxSegment, maxDataSegments,
      })
    } catch (err) {
      const reason = new VhostUserClientError('EFRONTEND_CLOSED', 'the handshake failed')
      for (const q of queues) q.close(reason)
      closeFds(fds)
      channel?.close(reason)
      guest.dispose()
      throw err
    }
  }

  /** Reads `bytes` (a positive multiple of 512) at `sector`. */
  async read(queue: number, sector: number, bytes: number): Promise<{ status: number; data: Uint8Array }> {
    checkDataLength(bytes)
    const c = await this.blk(queue, VIRTIO_BLK_T_IN, sector, { len: bytes, writable: true })
    return { status: c.in[1][0], data: c.in[0] }
  }

  /** Writes `data` (a positive multiple of 512 bytes) at `sector`; resolves with the status byte. */
  async write(queue: number, sector: number, data: Uint8Array): Promise<number> {
    checkDataLength(data.length)
    const c = await this.blk(queue, VIRTIO_BLK_T_OUT, sector, { data, writable: false })
    return c.in[0][0]
  }

  /** Sends VIRTIO_BLK_T_FLUSH; resolves with the status byte. */
  async flush(queue: number): Promise<number> {
    const c = await this.blk(queue, VIRTIO_BLK_T_FLUSH, 0, null)
    return c.in[0][0]
  }

  /** Sends VIRTIO_BLK_T_GET_ID; resolves with the status and the id (up to its first NUL). */
  async getId(queue: number): Promise<{ status: number; id: string }> {
    const c = await this.blk(queue, VIRTIO_BLK_T_GET_ID, 0, idBuffer())
    return { status: c.in[1][0], id: decodeId(c.in[0]) }
  }

  /** Sends VIRTIO_BLK_T_DISCARD with one segment per range; resolves with the status byte. */
  async discard(queue: number, ranges: readonly SectorRange[]): Promise<number> {
    const c = await this.blk(queue, VIRTIO_BLK_T_DISCARD, 0, rangesBuffer(ranges))
    return c.in[0][0]
  }

  /** Sends VIRTIO_BLK_T_WRITE_ZEROES with one segment per range; resolves with the status byte. */
  async writeZeroes(queue: number, ranges: readonly SectorRange[]): Promise<number> {
    const c = await this.blk(queue, VIRTIO_BLK_T_WRITE_ZEROES, 0, rangesBuffer(ranges))
    return c.in[0][0]
  }

  /**
   * Hostile/low-level: submits one chain made of the readable buffers `out` followed by writable
   * buffers of `inLens` bytes (filled with STATUS_NOT_WRITTEN so unwritten bytes show), one
   * descriptor per buffer. Resolves with the used length and the writable buffers' contents.
   */
  submitRaw(queue: number, out: readonly Uint8Array[], inLens: readonly number[], opts: RawOptions = {}): Promise<{ usedLen: number; in: Uint8Array[] }> {
    const buffers: ChainBuffer[] = [
      ...out.map((data) => ({ data, writable: false })),
      ...inLens.map((len) => ({ len, writable: true, fill: STATUS_NOT_WRITTEN })),
    ]
    return this.queue(queue).submit(buffers, { indirect: opts.indirect ?? this.useIndirect, maxSegment: 0, timeoutMs: opts.timeoutMs ?? 0 })
  }

  /**
   * Hostile/low-level: submits descriptors pointing anywhere (also outside guest memory); resolves
   * with the used length. Inspect or prepare memory through `guest.memory`.
   */
  submitSegments(queue: number, segs: readonly DriverSegment[], opts: RawOptions = {}): Promise<number> {
    return this.queue(queue).submitSegments(segs, { indirect: opts.indirect ?? this.useIndirect, maxSegment: 0, timeoutMs: opts.timeoutMs ?? 0 })
  }

  /**
   * Fast path: hands queue `queue`'s ring to `owner`, which then adds chains and reaps used
   * elements itself (buffers from `guest.alloc`) and is called on every call-eventfd wakeup; the
   * promise API rejects on that queue with EFRONTEND_BUSY until the lease is released. Throws
   * EFRONTEND_ARGUMENT for a queue that does not exist, EFRONTEND_BUSY while the queue has
   * submissions pending or is claimed, EFRONTEND_CLOSED after close.
   */
  claimQueue(queue: number, owner: RingOwner): RingLease {
    return this.queue(queue).claim(owner)
  }

  /** GET_CONFIG of [offset, offset+size); a refused read (empty or size-0 reply) is EFRONTEND_NACK. */
  getConfig(offset: number, size: number): Promise<Uint8Array> {
    return new Handshake(this.channel, this.replyAck).getConfig(offset, size)
  }

  /** SET_CONFIG (flags: CONFIG_TYPE_FRONTEND unless given); with REPLY_ACK a refusal is EFRONTEND_NACK. */
  setConfig(offset: number, data: Uint8Array, flags = CONFIG_TYPE_FRONTEND): Promise<void> {
    return new Handshake(this.channel, this.replyAck).set(FrontendReq.SET_CONFIG, encodeConfig({ offset, flags, data }))
  }

  /** GET_VRING_BASE: stops ring `index` (the client's queue is unusable afterwards) and returns its avail index. */
  async getVringBase(index: number): Promise<number> {
    const reply = await this.channel.call(FrontendReq.GET_VRING_BASE, VERSION, encodeVringState({ index, num: 0 }), [], true) as Reply
    closeFds(reply.fds)
    expectSize(reply, VRING_STATE_SIZE)
    return decodeVringState(reply.payload).num
  }

  /**
   * Raw control message for protocol tests: sends `code` with `payload` and returns the reply (the
   * caller owns its fds), or null when none was awaited.
   */
  request(code: number, payload: Uint8Array = new Uint8Array(0), opts: RequestOptions = {}): Promise<Reply | null> {
    const flags = opts.flags ?? VERSION
    const reply = opts.reply ?? (HAS_OWN_REPLY.has(code) || (flags & FLAG_NEED_REPLY) !== 0)
    return this.channel.call(code, flags, payload, opts.fds ?? [], reply)
  }

  /** Closes the socket and every fd this client created, rejects what is pending, unmaps guest memory. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    const reason = new VhostUserClientError('EFRONTEND_CLOSED', 'the client was closed')
    for (const q of this.queues) q.close(reason)
    this.channel.close(reason)
    this.guest.dispose()
  }

  private get replyAck(): boolean {
    return hasFeature(this.protocolFeatures, ProtocolFeature.REPLY_ACK)
  }

  private queue(index: number): ClientQueue {
    const q = this.queues[index]
    if (q === undefined) throw new VhostUserClientError('EFRONTEND_ARGUMENT', `queue ${index} does not exist (${this.queues.length} queues)`)
    return q
  }

  /** One virtio-blk request: out-header, optional data buffer, status byte. */
  private blk(queue: number, type: number, sector: number, data: ChainBuffer | null): Promise<Completion> {
    const q = this.queue(queue)
    if (this.channel.closed) return Promise.reject(new VhostUserClientError('EFRONTEND_CLOSED', 'the connection is closed'))
    const len = data === null ? 0 : (data.data?.length ?? data.len ?? 0)
    if (this.maxSegment > 0 && Math.ceil(len / this.maxSegment) > this.maxDataSegments) {
      throw new VhostUserClientError('EFRONTEND_ARGUMENT', `${len} bytes need more than seg_max ${this.maxDataSegments} segments of size_max ${this.maxSegment}`)
    }
    const buffers = data === null ? [outHeader(type, sector), statusBuffer()] : [outHeader(type, sector), data, statusBuffer()]
    return q.submit(buffers, { indirect: this.useIndirect, maxSegment: this.maxSegment, timeoutMs: 0 })
  }
}

/** Request/reply helpers over the control channel, for the handshake and control calls. */
class Handshake {
  constructor(private readonly channel: ControlChannel, public replyAck = false) {}

  /** A request whose reply is a u64. */
  async getU64(request: number): Promise<bigint> {
    const reply = await this.channel.call(request, VERSION, new Uint8Array(0), [], true) as Reply
    closeFds(reply.fds)
    expectSize(reply, U64_SIZE)
    return decodeU64(reply.payload)
  }

  /** A request without a reply of its own; with REPLY_ACK it asks for an ack and checks it. */
  async set(request: number, payload: Uint8Array, fds: readonly number[] = []): Promise<void> {
    const reply = await this.channel.call(request, this.replyAck ? VERSION | FLAG_NEED_REPLY : VERSION, payload, fds, this.replyAck)
    if (reply === null) return
    closeFds(reply.fds)
    expectSize(reply, U64_SIZE)
    const status = decodeU64(reply.payload)
    if (status !== 0n) throw new VhostUserClientError('EFRONTEND_NACK', `the back-end refused ${requestName(request)} (status ${status})`)
  }

  /** GET_CONFIG; the reply must echo offset and size (vhost-user.rst: "payload size MUST match"). */
  async getConfig(offset: number, size: number): Promise<Uint8Array> {
    const req = encodeConfig({ offset, flags: CONFIG_TYPE_FRONTEND, data: new Uint8Array(size) })
    const reply = await this.channel.call(FrontendReq.GET_CONFIG, VERSION, req, [], true) as Reply
    closeFds(reply.fds)
    if (reply.payload.length <= CONFIG_HEADER_SIZE) {
      throw new VhostUserClientError('EFRONTEND_NACK', `the back-end refused GET_CONFIG of ${size} bytes at ${offset}`)
    }
    let cfg
    try {
      cfg = decodeConfig(reply.payload)
    } catch (err) {
      throw new VhostUserClientError('EFRONTEND_PROTOCOL', `bad GET_CONFIG reply: ${(err as Error).message}`, { cause: err })
    }
    if (cfg.offset !== offset || cfg.size !== size) {
      throw new VhostUserClientError('EFRONTEND_PROTOCOL', `GET_CONFIG reply covers [${cfg.offset}, +${cfg.size}), asked [${offset}, +${size})`)
    }
    return cfg.data
  }
}

function expectSize(reply: Reply, size: number): void {
  if (reply.payload.length !== size) {
    throw new VhostUserClientError('EFRONTEND_PROTOCOL', `${requestName(reply.header.request)} reply of ${reply.payload.length} bytes, expected ${size}`)
  }
}

/** Allocates one queue's ring areas (and indirect tables of `indirectEntries`, if any) in guest RAM. */
function placeRing(guest: GuestRam, size: number, indirectEntries: number): {
  driver: { descGpa: number; availGpa: number; usedGpa: number; indirectGpa?: number; indirectBytes?: number; indirectEntries?: number }
} {
  const take = (len: number): number => {
    const gpa = guest.alloc(len, RING_ALIGN)
    if (gpa < 0) throw new VhostUserClientError('EFRONTEND_ARGUMENT', `guest memory too small for the rings of ${size} entries`)
    return gpa
  }
  const descGpa = take(descTableBytes(size))
  const availGpa = take(availRingBytes(size))
  const usedGpa = take(usedRingBytes(size))
  if (indirectEntries === 0) return { driver: { descGpa, availGpa, usedGpa } }
  const entries = Math.min(indirectEntries, size)
  // One table per descriptor: with indirect chains every in-flight request holds exactly one.
  const indirectBytes = size * entries * DESC_SIZE
  return { driver: { descGpa, availGpa, usedGpa, indirectGpa: take(indirectBytes), indirectBytes, indirectEntries: entries } }
}
