/**
 * The composition root for `serve`: builds the disk driver, the TagSet and GenDisk, the
 * virtio-blk device and the vhost-user server from options, and shuts them down in order.
 * Owns wiring and lifecycle only; every policy lives in the layer it belongs to.
 */
import path from 'node:path'
import type { Logger } from 'pino'
import { chainCapacityFor, initBlkRequest } from '../blk/request-state.js'
import { BlkDevice } from '../blk/device.js'
import { MemoryDisk } from '../disks/memory.js'
import { GenDiskBuilder, TagSet, type GenDisk } from '../mq/index.js'
import { VhostUserServer } from '../vhost/server.js'
import { formatSize } from './size.js'

/** Data segments per request we advertise (seg_max) and accept. */
export const SEG_MAX = 254
/** Largest single segment (size_max): non-zero, unlike qsd's 0 which makes Linux clamp segments. */
export const SIZE_MAX = 1 << 20
/** Discard / write-zeroes ranges per request: Linux sends up to 256 when allowed. */
export const MAX_RANGES = 256
/** Sectors per discard / write-zeroes range (the u32 field's range, block aligned). */
const MAX_RANGE_SECTORS = 0x3fff_fff8

/** Everything `serve` needs, already validated by the CLI. */
export interface ServeOptions {
  socketPath?: string
  fd?: number
  memoryBytes: number
  readOnly: boolean
  numQueues: number
  queueSize: number
  hwQueues: number
  queueDepth: number
  logicalBlockSize: number
  serial: string
  socketMode?: number
}

/** A running server. */
export interface Daemon {
  readonly disk: GenDisk
  readonly device: BlkDevice
  /** Stops taking requests, completes those in flight, removes the socket. */
  close(): Promise<void>
}

/** Builds and starts everything; throws (with a clear message) when the socket is in use. */
export function startDaemon(opts: ServeOptions, log: Logger): Daemon {
  const driver = new MemoryDisk()
  const tagSet = new TagSet({
    nrHwQueues: opts.hwQueues,
    queueDepth: opts.queueDepth,
    ops: driver,
    maxSegments: chainCapacityFor(SEG_MAX),
    maxRanges: MAX_RANGES,
    initRequest: initBlkRequest,
  })
  const sectorsPerBlock = opts.logicalBlockSize / 512
  const disk = new GenDiskBuilder()
    .name('vda')
    .capacityBytes(opts.memoryBytes)
    .logicalBlockSize(opts.logicalBlockSize)
    .physicalBlockSize(opts.logicalBlockSize)
    .readOnly(opts.readOnly)
    .rotational(false)
    .serial(opts.serial)
    .maxSegments(SEG_MAX)
    .maxSegmentSize(SIZE_MAX)
    .maxSectors((SEG_MAX * SIZE_MAX) / 512)
    .discard({ maxSectors: MAX_RANGE_SECTORS, maxSegments: MAX_RANGES, granularitySectors: sectorsPerBlock })
    .writeZeroes({ maxSectors: MAX_RANGE_SECTORS, maxSegments: MAX_RANGES, mayUnmap: true })
    .build(tagSet)
  const device = new BlkDevice({ disk, tagSet, numQueues: opts.numQueues, writeback: true, log })
  const server = VhostUserServer.listen({
    socketPath: opts.socketPath,
    listenFd: opts.fd,
    socketMode: opts.socketMode,
    device,
    log,
  })
  log.info(
    {
      disk: 'memory',
      size: formatSize(opts.memoryBytes),
      readOnly: opts.readOnly,
      numQueues: opts.numQueues,
      hwQueues: opts.hwQueues,
      queueDepth: opts.queueDepth,
      logicalBlockSize: opts.logicalBlockSize,
    },
    'serving',
  )
  return {
    disk,
    device,
    async close() {
      await server.close()
      tagSet.destroy()
    },
  }
}

/** The QEMU arguments that attach a guest to this server (printed at startup). */
export function qemuArguments(opts: ServeOptions): string {
  const socket = opts.socketPath !== undefined ? path.resolve(opts.socketPath) : '<socket path>'
  return [
    '-object memory-backend-memfd,id=mem,size=<guest RAM, e.g. 1G>,share=on -numa node,memdev=mem',
    `-chardev socket,id=vub0,path=${socket}`,
    `-device vhost-user-blk-pci,chardev=vub0,num-queues=${opts.numQueues},queue-size=${Math.min(opts.queueSize, 1024)}`,
  ].join(' \\\n  ')
}
