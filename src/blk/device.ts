/**
 * The virtio-blk device: which features it offers, its config space (derived from the GenDisk),
 * the write-cache mode the guest chooses, and one queue per running virtqueue, mapped onto the
 * TagSet's hardware queues: a BlkQueue on this thread, or, with I/O threads, a RemoteQueue whose
 * hardware queue an I/O thread serves. Config space and the write-cache mode stay here either way.
 *
 * Owns the device model. Does not own sockets or memory (src/vhost) or storage (src/disks).
 */
import type { Logger } from 'pino'
import type { GenDisk, TagSet } from '../mq/index.js'
import type { DeviceQueue, RingStart, VhostUserDevice } from '../vhost/device.js'
import { ProtocolFeature, featureBit, hasFeature } from '../vhost/messages.js'
import { QueueSet } from './queue.js'
import type { IoThreads } from './remote-queue.js'
import { WriteCacheMode } from './write-cache.js'
import {
  BLK_CONFIG_OFFSETS, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC, encodeBlkConfig,
} from './spec.js'

/** vhost-user.rst: VHOST_USER_MAX_CONFIG_SIZE; GET_CONFIG beyond the struct reads zeros up to here. */
const MAX_CONFIG_SIZE = 256
/** vhost-user.rst: SET_CONFIG flag values; only a frontend-initiated write is accepted. */
const VHOST_SET_CONFIG_TYPE_FRONTEND = 0

/** How the device is built. */
export interface BlkDeviceOptions {
  disk: GenDisk
  tagSet: TagSet
  /** Virtqueues offered (GET_QUEUE_NUM, config num_queues). */
  numQueues: number
  /** Initial cache mode: true = writeback (wce 1). The guest may change it with CONFIG_WCE. */
  writeback: boolean
  log: Logger
  /** Where the mode is kept: pass the cell I/O threads read (default: a cell of its own). */
  writeCache?: WriteCacheMode
  /** Serve the hardware queues on these I/O threads (default: on this thread). */
  ioThreads?: IoThreads | null
  /** Longest adaptive polling window in µs for queues served on this thread (default 0: never poll). */
  pollUs?: number
}

/** Offered feature word for a disk. */
function offeredFeatures(disk: GenDisk): bigint {
  let f =
    featureBit(VIRTIO_F_VERSION_1) |
    featureBit(VIRTIO_RING_F_INDIRECT_DESC) |
    featureBit(VIRTIO_RING_F_EVENT_IDX) |
    featureBit(VIRTIO_BLK_F_SIZE_MAX) |
    featureBit(VIRTIO_BLK_F_SEG_MAX) |
    featureBit(VIRTIO_BLK_F_BLK_SIZE) |
    featureBit(VIRTIO_BLK_F_TOPOLOGY) |
    featureBit(VIRTIO_BLK_F_FLUSH) |
    featureBit(VIRTIO_BLK_F_CONFIG_WCE) |
    featureBit(VIRTIO_BLK_F_MQ)
  if (disk.readOnly) f |= featureBit(VIRTIO_BLK_F_RO)
  if (disk.discard !== null) f |= featureBit(VIRTIO_BLK_F_DISCARD)
  if (disk.writeZeroes !== null) f |= featureBit(VIRTIO_BLK_F_WRITE_ZEROES)
  return f
}

/** A virtio-blk device over one GenDisk. */
export class BlkDevice implements VhostUserDevice {
  readonly features: bigint
  readonly protocolFeatures = featureBit(ProtocolFeature.CONFIG)
  readonly numQueues: number
  /** The write-cache mode's cell (drivers, here or on I/O threads, read it per write). */
  readonly writeCache: WriteCacheMode
  private readonly initialWce: number
  private readonly disk: GenDisk
  private readonly log: Logger
  /** The queues served on this thread; null when I/O threads serve them all. */
  private readonly queues: QueueSet | null
  private readonly ioThreads: IoThreads | null

  constructor(opts: BlkDeviceOptions) {
    this.disk = opts.disk
    this.log = opts.log
    this.numQueues = opts.numQueues
    this.features = offeredFeatures(opts.disk)
    this.initialWce = opts.writeback ? 1 : 0
    this.writeCache = opts.writeCache ?? new WriteCacheMode()
    this.writeCache.wce = this.initialWce
    this.ioThreads = opts.ioThreads ?? null
    this.queues = this.ioThreads !== null ? null : new QueueSet(opts.tagSet, opts.disk, (vring, reason) =>
      this.log.error({ vring, reason }, 'guest corrupted its ring: queue stopped'), opts.pollUs ?? 0)
  }

  /** Current write-cache mode (1 writeback, 0 writethrough): the driver reads it per flush policy. */
  get wce(): number {
    return this.writeCache.wce
  }

  /** The config space image (virtio 1.2 §5.2.4), zero-padded to MAX_CONFIG_SIZE. */
  config(): Uint8Array {
    const d = this.disk
    const blocksPerPhysical = d.physicalBlockSize / d.logicalBlockSize
    const image = new Uint8Array(MAX_CONFIG_SIZE)
    image.set(
      encodeBlkConfig({
        capacity: d.capacitySectors,
        sizeMax: d.maxSegmentSize,
        segMax: d.maxSegments,
        geometry: { cylinders: 0, heads: 0, sectors: 0 },
        blkSize: d.logicalBlockSize,
        physicalBlockExp: Math.log2(blocksPerPhysical),
        alignmentOffset: 0,
        minIoSize: 1,
        optIoSize: 0,
        wce: this.writeCache.wce,
        numQueues: this.numQueues,
        maxDiscardSectors: d.discard?.maxSectors ?? 0,
        maxDiscardSeg: d.discard?.maxSegments ?? 0,
        discardSectorAlignment: d.discard?.granularitySectors ?? 0,
        maxWriteZeroesSectors: d.writeZeroes?.maxSectors ?? 0,
        maxWriteZeroesSeg: d.writeZeroes?.maxSegments ?? 0,
        writeZeroesMayUnmap: d.writeZeroes?.mayUnmap ? 1 : 0,
      }),
    )
    return image
  }

  getConfig(offset: number, size: number): Uint8Array | null {
    if (size === 0 || offset + size > MAX_CONFIG_SIZE) return null
    return this.config().subarray(offset, offset + size)
  }

  /** Only the `wce` byte is writable, and only by the frontend on the guest's behalf (as in qsd). */
  setConfig(offset: number, data: Uint8Array, flags: number): boolean {
    if (flags !== VHOST_SET_CONFIG_TYPE_FRONTEND || offset !== BLK_CONFIG_OFFSETS.wce || data.length !== 1 || data[0] > 1) return false
    this.writeCache.wce = data[0]
    this.log.info({ writeback: data[0] === 1 }, 'guest changed the write cache mode')
    return true
  }

  setFeatures(features: bigint): void {
    // virtio 1.2 §5.2.5.1: without FLUSH the driver cannot ask for durability, so the device must
    // write through; without CONFIG_WCE the mode stays what the server was started with.
    if (!hasFeature(features, VIRTIO_BLK_F_FLUSH)) this.writeCache.wce = 0
    else if (!hasFeature(features, VIRTIO_BLK_F_CONFIG_WCE)) this.writeCache.wce = this.initialWce
  }

  startQueue(ring: RingStart): DeviceQueue {
    const hwq = this.disk.tagSet.mapQueue(ring.index)
    if (this.queues === null) return (this.ioThreads as IoThreads).startQueue(ring, hwq.index)
    return this.queues.start(ring.index, ring.vq, ring.mem, hwq, ring.notify)
  }

  reset(): void {
    this.writeCache.wce = this.initialWce
  }
}
