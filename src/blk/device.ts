/**
 * The virtio-blk device: which features it offers, its config space (derived from the GenDisk),
 * the write-cache mode the guest chooses, and one BlkQueue per running virtqueue, mapped onto
 * the TagSet's hardware queues.
 *
 * Owns the device model. Does not own sockets or memory (src/vhost) or storage (src/disks).
 */
import type { Logger } from 'pino'
import { type GenDisk, type HwQueue, type Request, type TagSet } from '../mq/index.js'
import type { GuestMemory, SplitQueue } from '../virtqueue/index.js'
import type { DeviceQueue, Notify, VhostUserDevice } from '../vhost/device.js'
import { ProtocolFeature, featureBit, hasFeature } from '../vhost/messages.js'
import { BlkQueue } from './queue.js'
import { blkState } from './request-state.js'
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
  /** Current write-cache mode (1 writeback, 0 writethrough): the driver reads it per flush policy. */
  wce: number
  private readonly initialWce: number
  private readonly disk: GenDisk
  private readonly log: Logger
  /** Running queues per hardware queue, to restart them when a tag frees. */
  private readonly queuesOnHwq: BlkQueue[][]

  constructor(opts: BlkDeviceOptions) {
    this.disk = opts.disk
    this.log = opts.log
    this.numQueues = opts.numQueues
    this.features = offeredFeatures(opts.disk)
    this.wce = this.initialWce = opts.writeback ? 1 : 0
    this.queuesOnHwq = opts.tagSet.hwQueues.map(() => [])
    for (const hwq of opts.tagSet.hwQueues) {
      hwq.onEnd = endRequest
      hwq.onRestart = () => this.restart(hwq)
    }
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
        wce: this.wce,
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
    this.wce = data[0]
    this.log.info({ writeback: this.wce === 1 }, 'guest changed the write cache mode')
    return true
  }

  setFeatures(features: bigint): void {
    // virtio 1.2 §5.2.5.1: without FLUSH the driver cannot ask for durability, so the device must
    // write through; without CONFIG_WCE the mode stays what the server was started with.
    if (!hasFeature(features, VIRTIO_BLK_F_FLUSH)) this.wce = 0
    else if (!hasFeature(features, VIRTIO_BLK_F_CONFIG_WCE)) this.wce = this.initialWce
  }

  startQueue(index: number, vq: SplitQueue, mem: GuestMemory, notify: Notify): DeviceQueue {
    const hwq = this.disk.tagSet.mapQueue(index)
    return new BlkQueue(index, vq, mem, hwq, this.disk, notify, this.queuesOnHwq[hwq.index], (i, reason) =>
      this.log.error({ vring: i, reason }, 'guest corrupted its ring: queue stopped'),
    )
  }

  reset(): void {
    this.wce = this.initialWce
  }

  /** A tag freed on a hardware queue that had run dry: resume the queues that were waiting. */
  private restart(hwq: HwQueue): void {
    for (const queue of this.queuesOnHwq[hwq.index]) {
      if (!queue.waitingForTag) continue
      queue.waitingForTag = false
      queue.kick()
    }
  }
}

/** Shared completion hook (no closure per request): route to the queue that popped the chain. */
function endRequest(rq: Request): void {
  blkState(rq).queue?.onEnd(rq)
}
