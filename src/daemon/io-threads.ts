/**
 * Composition of the I/O threads (`--io-threads N`): which threads run, and what each one builds
 * (io-thread.ts, its entry point): a driver instance over the disk's shared storage, a TagSet of
 * the hardware queues it serves, and a GenDisk shaped like the main thread's.
 *
 * Shared storage per driver, decided here once:
 * - memory: the MemoryDisk's store (a memfd and its written-page bitmap); each thread maps it.
 * - file: the image the main thread opened and locked (fd numbers are process-wide); each thread
 *   runs its own engine (io_uring, sync or thread pool: whichever the main thread ended up with).
 * - null: nothing to share.
 * The main thread keeps its own instance open (and owning) until the threads are gone.
 *
 * Owns wiring only; the thread protocol and the queue proxies are src/blk's.
 */
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { hwQueuesOfThread } from '../blk/io-thread-protocol.js'
import { IoThreads } from '../blk/remote-queue.js'
import type { WriteCacheMode } from '../blk/write-cache.js'
import { FileDisk, type EngineChoice } from '../disks/file.js'
import type { IoEngineName } from '../disks/io-engine.js'
import type { Image } from '../disks/image.js'
import { MemoryDisk, type MemoryStore } from '../disks/memory.js'
import { NullDisk } from '../disks/null.js'
import { GenDiskBuilder, type DiscardLimits, type GenDisk, type Operations, type TagSet, type WriteZeroesLimits } from '../mq/index.js'

/** Most I/O threads (`--io-threads`). */
export const MAX_IO_THREADS = 64

/** How a thread opens its driver (plain data: it crosses to the worker). */
export type DriverRecipe =
  | { kind: 'memory'; store: MemoryStore }
  | { kind: 'null' }
  | { kind: 'file'; image: Image; engine: IoEngineName }

/** A GenDisk's shape as plain data. */
export interface GenDiskShape {
  name: string
  capacitySectors: number
  logicalBlockSize: number
  physicalBlockSize: number
  readOnly: boolean
  rotational: boolean
  serial: string
  discard: DiscardLimits | null
  writeZeroes: WriteZeroesLimits | null
  maxSegments: number
  maxSegmentSize: number
  maxSectors: number
}

/** The TagSet options a thread copies from the main thread's. */
export interface TagSetShape {
  queueDepth: number
  maxSegments: number
  maxRanges: number
  timeoutMs: number
  requeueDelayMs: number
}

/** What one thread is told to build (its `workerData`). */
export interface IoThreadData {
  index: number
  /** Hardware queues it serves (its TagSet's size). */
  hwQueues: number
  tagSet: TagSetShape
  disk: GenDiskShape
  driver: DriverRecipe
  /** The write-cache mode's cell (BlkDevice's). */
  writeCache: SharedArrayBuffer
  /** Longest adaptive polling window in µs. */
  pollUs: number
}

/** What the threads serve. */
export interface IoThreadsSetup {
  /** Threads asked for (≥ 1); no more run than there are hardware queues. */
  count: number
  /** The main thread's tag set, disk and driver (the threads copy them). */
  tagSet: TagSet
  disk: GenDisk
  driver: Operations
  writeCache: WriteCacheMode
  log: Logger
  /** Longest adaptive polling window in µs (0: never poll). */
  pollUs: number
}

/** Starts the threads (their workers load in the background; rings handed over meanwhile wait). */
export function startIoThreads(setup: IoThreadsSetup): IoThreads {
  const { tagSet, disk } = setup
  const count = Math.min(setup.count, tagSet.nrHwQueues)
  if (count < setup.count) {
    setup.log.warn({ ioThreads: setup.count, hwQueues: tagSet.nrHwQueues }, `only ${count} I/O threads run: one per hardware queue at most`)
  }
  const shared: Omit<IoThreadData, 'index' | 'hwQueues'> = {
    tagSet: {
      queueDepth: tagSet.queueDepth, maxSegments: tagSet.maxSegments, maxRanges: tagSet.maxRanges,
      timeoutMs: tagSet.timeoutMs, requeueDelayMs: tagSet.requeueDelayMs,
    },
    disk: shapeOf(disk),
    driver: recipeFor(setup.driver),
    writeCache: setup.writeCache.buffer,
    pollUs: setup.pollUs,
  }
  return new IoThreads({
    count,
    log: setup.log,
    spawn: (index) => {
      const workerData: IoThreadData = { ...shared, index, hwQueues: hwQueuesOfThread(index, count, tagSet.nrHwQueues) }
      return new Worker(new URL('./io-thread.js', import.meta.url), { workerData, name: `io-thread-${index}` })
    },
  })
}

/** How a thread gets its own instance of `driver`. */
function recipeFor(driver: Operations): DriverRecipe {
  if (driver instanceof MemoryDisk) return { kind: 'memory', store: driver.store }
  if (driver instanceof NullDisk) return { kind: 'null' }
  if (driver instanceof FileDisk) {
    // The engine the main thread ended up with (its choice for the image, or the fallback it logged).
    return { kind: 'file', image: driver.image, engine: driver.engineName }
  }
  throw new TypeError(`no I/O thread recipe for the driver ${driver.constructor.name}`)
}

/**
 * The driver a thread serves with, for at most `maxInFlight` requests at once. A file disk's
 * cache mode is the shared cell's from the start (`writeCache`).
 */
export function openDriver(recipe: DriverRecipe, maxInFlight: number, writeCache: WriteCacheMode, log: EngineChoice['log']): Operations {
  switch (recipe.kind) {
    case 'memory':
      return MemoryDisk.attach(recipe.store)
    case 'null':
      return new NullDisk()
    case 'file': {
      const file = FileDisk.share(recipe.image, { engine: recipe.engine, maxInFlight, writeback: writeCache.wce === 1, log })
      file.attachWriteCache(writeCache)
      return file
    }
  }
}

function shapeOf(disk: GenDisk): GenDiskShape {
  return {
    name: disk.name, capacitySectors: disk.capacitySectors, logicalBlockSize: disk.logicalBlockSize,
    physicalBlockSize: disk.physicalBlockSize, readOnly: disk.readOnly, rotational: disk.rotational, serial: disk.serial,
    discard: disk.discard === null ? null : { ...disk.discard },
    writeZeroes: disk.writeZeroes === null ? null : { ...disk.writeZeroes },
    maxSegments: disk.maxSegments, maxSegmentSize: disk.maxSegmentSize, maxSectors: disk.maxSectors,
  }
}

/** The GenDisk `shape` describes, over `tagSet`. */
export function buildDisk(shape: GenDiskShape, tagSet: TagSet): GenDisk {
  return new GenDiskBuilder()
    .name(shape.name)
    .capacitySectors(shape.capacitySectors)
    .logicalBlockSize(shape.logicalBlockSize)
    .physicalBlockSize(shape.physicalBlockSize)
    .readOnly(shape.readOnly)
    .rotational(shape.rotational)
    .serial(shape.serial)
    .discard(shape.discard)
    .writeZeroes(shape.writeZeroes)
    .maxSegments(shape.maxSegments)
    .maxSegmentSize(shape.maxSegmentSize)
    .maxSectors(shape.maxSectors)
    .build(tagSet)
}
