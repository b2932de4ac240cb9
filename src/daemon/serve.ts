/**
 * The composition root for `serve`: builds the disk driver, the TagSet and GenDisk, the
 * virtio-blk device and the vhost-user server from options, and shuts them down in order.
 * Owns wiring and lifecycle only; every policy lives in the layer it belongs to.
 */
import path from 'node:path'
import type { Logger } from 'pino'
import { chainCapacityFor, initBlkRequest } from '../blk/request-state.js'
import { BlkDevice } from '../blk/device.js'
import { WriteCacheMode } from '../blk/write-cache.js'
import { FileDisk } from '../disks/file.js'
import { IO_ENGINES, type IoEngineName } from '../disks/io-engine.js'
import { MemoryDisk } from '../disks/memory.js'
import { NullDisk } from '../disks/null.js'
import { GenDiskBuilder, TagSet, type GenDisk, type Operations } from '../mq/index.js'
import { VhostUserServer } from '../vhost/server.js'
import { startIoThreads } from './io-threads.js'
import { formatSize } from './size.js'

export { IO_ENGINES }

/** Data segments per request we advertise (seg_max) and accept. */
export const SEG_MAX = 254
/** Largest single segment (size_max): non-zero, unlike qsd's 0 which makes Linux clamp segments. */
export const SIZE_MAX = 1 << 20
/** Discard / write-zeroes ranges per request: Linux sends up to 256 when allowed. */
export const MAX_RANGES = 256
/** Sectors per discard / write-zeroes range (the u32 field's range, block aligned). */
const MAX_RANGE_SECTORS = 0x3fff_fff8

/** A sparse memory disk (`--memory`). */
export interface MemoryDiskSpec {
  kind: 'memory'
  bytes: number
}

/** A null disk (`--null`): every request completes at once, nothing is stored (like qemu's null-co). */
export interface NullDiskSpec {
  kind: 'null'
  bytes: number
}

/** A raw image file or block device (`--file`). */
export interface FileDiskSpec {
  kind: 'file'
  path: string
  /** `--size`: create a missing file or grow a shorter one to this many bytes. */
  sizeBytes?: number
  /** `--direct`: O_DIRECT. */
  direct: boolean
  /** `--io-engine`; undefined: sync for an image in memory, else io_uring, else threads. */
  ioEngine?: IoEngineName
}

/** Everything `serve` needs, already validated by the CLI. */
export interface ServeOptions {
  socketPath?: string
  fd?: number
  disk: MemoryDiskSpec | NullDiskSpec | FileDiskSpec
  /** Initial write-cache mode (`--cache`): true = writeback. The guest may switch it (CONFIG_WCE). */
  writeback: boolean
  readOnly: boolean
  numQueues: number
  queueSize: number
  hwQueues: number
  queueDepth: number
  /** `--io-threads`: serve the hardware queues on this many threads (0: on the main thread). */
  ioThreads: number
  /** `--poll-us`: longest adaptive polling window of a thread's rings, in µs (0: never poll). */
  pollUs: number
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

/** The driver for the disk the options describe, with what the GenDisk needs from it. */
interface OpenedDisk {
  driver: Operations
  /** The file disk, to wire its write cache; null for memory and null disks. */
  file: FileDisk | null
  /** Releases what opening took (the image, the memory disk's memfd); nothing may be in flight. */
  close(): void
  capacityBytes: number
  physicalBlockSize: number
  /** Fields for the 'serving' log line. */
  describe: Record<string, unknown>
}

function openDisk(opts: ServeOptions, log: Logger): OpenedDisk {
  const spec = opts.disk
  if (spec.kind !== 'file') {
    const driver = spec.kind === 'memory' ? MemoryDisk.create(spec.bytes) : new NullDisk()
    return {
      driver,
      file: null,
      close: () => {
        if (driver instanceof MemoryDisk) driver.close()
      },
      capacityBytes: spec.bytes,
      physicalBlockSize: opts.logicalBlockSize,
      describe: { disk: spec.kind, size: formatSize(spec.bytes) },
    }
  }
  const file = FileDisk.open({
    path: spec.path,
    readOnly: opts.readOnly,
    direct: spec.direct,
    sizeBytes: spec.sizeBytes,
    logicalBlockSize: opts.logicalBlockSize,
    engine: spec.ioEngine,
    maxInFlight: opts.hwQueues * opts.queueDepth,
    writeback: opts.writeback,
    log,
  })
  const image = file.image
  const tail = image.sizeBytes - image.capacityBytes
  if (tail > 0) log.warn({ image: image.path, bytes: tail }, 'the image ends in a partial block: its last bytes are not served')
  return {
    driver: file,
    file,
    close: () => file.close(),
    capacityBytes: image.capacityBytes,
    physicalBlockSize: image.physicalBlockSize,
    describe: {
      disk: image.blockDevice ? 'block-device' : 'file',
      image: image.path,
      size: formatSize(image.capacityBytes),
      ioEngine: file.engineName,
      direct: image.directAlignment !== null,
    },
  }
}

/** Builds and starts everything; throws (with a clear message) when the socket or the image is in use. */
export function startDaemon(opts: ServeOptions, log: Logger): Daemon {
  const opened = openDisk(opts, log)
  try {
    return serveDisk(opts, log, opened)
  } catch (err) {
    opened.close()
    throw err
  }
}

function serveDisk(opts: ServeOptions, log: Logger, opened: OpenedDisk): Daemon {
  const { driver, file, capacityBytes, physicalBlockSize, describe } = opened
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
    .capacityBytes(capacityBytes)
    .logicalBlockSize(opts.logicalBlockSize)
    .physicalBlockSize(physicalBlockSize)
    .readOnly(opts.readOnly)
    .rotational(false)
    .serial(opts.serial)
    .maxSegments(SEG_MAX)
    .maxSegmentSize(SIZE_MAX)
    .maxSectors((SEG_MAX * SIZE_MAX) / 512)
    .discard({ maxSectors: MAX_RANGE_SECTORS, maxSegments: MAX_RANGES, granularitySectors: sectorsPerBlock })
    .writeZeroes({ maxSectors: MAX_RANGE_SECTORS, maxSegments: MAX_RANGES, mayUnmap: true })
    .build(tagSet)
  const writeCache = new WriteCacheMode()
  const ioThreads = opts.ioThreads > 0 ? startIoThreads({ count: opts.ioThreads, tagSet, disk, driver, writeCache, log, pollUs: opts.pollUs }) : null
  const device = new BlkDevice({ disk, tagSet, numQueues: opts.numQueues, writeback: opts.writeback, log, writeCache, ioThreads, pollUs: opts.pollUs })
  // The driver follows the guest's write-cache bit: BlkDevice owns `wce`, the file disk reads it per write.
  file?.attachWriteCache(device)
  let server: VhostUserServer
  try {
    server = VhostUserServer.listen({ socketPath: opts.socketPath, listenFd: opts.fd, socketMode: opts.socketMode, device, log })
  } catch (err) {
    void ioThreads?.close()
    throw err
  }
  log.info(
    {
      ...describe,
      readOnly: opts.readOnly,
      writeback: opts.writeback,
      numQueues: opts.numQueues,
      hwQueues: opts.hwQueues,
      queueDepth: opts.queueDepth,
      ioThreads: ioThreads?.count ?? 0,
      pollUs: opts.pollUs,
      logicalBlockSize: opts.logicalBlockSize,
    },
    'serving',
  )
  return {
    disk,
    device,
    async close() {
      await server.close()
      await ioThreads?.close()
      tagSet.destroy()
      opened.close()
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
