/**
 * The file disk: an mq Operations driver over a raw image, a regular file or a block device,
 * doing its I/O through an engine (io_uring, the libuv thread pool, or inline system calls for an
 * image in memory: io-engine.ts chooses).
 *
 * Owns the per-request state machine (a `FileIo` per tag, made once in `initRequest`) and what
 * each operation means on the host:
 * - READ / WRITE: preadv / pwritev straight between the image and the request's segments (guest
 *   memory). A short transfer is continued from where it stopped, never reported as success. A
 *   read that meets end-of-file (only possible if the file shrank under us) reads zeroes from
 *   there, as QEMU's file driver does: the image is treated like a sparse file. A write that
 *   writes nothing is ENOSPC.
 * - Write cache: the guest's writeback bit (`wce`, owned by the virtio device) decides per write:
 *   in writethrough mode (wce 0) or for an FUA write, writes carry RWF_DSYNC (durable when they
 *   complete: the kernel's fdatasync of that range), and write-zeroes end with an fdatasync.
 * - FLUSH: fdatasync.
 * - DISCARD: fallocate(PUNCH_HOLE | KEEP_SIZE) on a file, BLKDISCARD on a block device, one range
 *   after another. Discard is a hint: an image that refuses it (EOPNOTSUPP) makes every discard
 *   succeed without effect from then on.
 * - WRITE_ZEROES: fallocate(ZERO_RANGE), or PUNCH_HOLE | KEEP_SIZE for a range flagged UNMAP. On a
 *   block device these are the kernel's BLKZEROOUT paths (write-zeroes without, resp. with, unmap).
 *   A mode the image refuses (EOPNOTSUPP) is remembered and the next one is tried: UNMAP falls
 *   back to ZERO_RANGE, ZERO_RANGE to writing zeroes from a shared zero page run.
 * - O_DIRECT (`--direct`): a request whose segments are not aligned as the image requires goes
 *   through a page-aligned bounce buffer (up to 1 MiB, in chunks), made for that request only:
 *   guests align their buffers, so this is the rare path.
 * - Errors: a failed operation fails its request only (NOSPC for ENOSPC/EDQUOT, else IOERR) and
 *   is logged with its errno code, rate-limited; the disk keeps serving.
 *
 * Requests end asynchronously, so each `FileIo` captures `rq.generation` when it takes the
 * request and passes it to `rq.end()`. Nothing is allocated per request on the io_uring and sync
 * engines (bounce buffers aside). Sees only mq types, byte segments and the native layer.
 */
import fs from 'node:fs'
import * as native from '../native/index.js'
import { BlkStatus, EMPTY_SEGMENT, ReqFlag, ReqOp, SECTOR_SIZE, type Operations, type Request } from '../mq/index.js'
import { openImage, type Image } from './image.js'
import { IoErrorLog, type DiskLogger } from './io-error-log.js'
import { createEngine, type IoContext, type IoEngine, type IoEngineName, type IoSink } from './io-engine.js'

const EOPNOTSUPP = 95
const ENOSPC = 28
const EDQUOT = 122
/** fallocate modes: deallocate (reads back zeroes), and zero in place. */
const PUNCH_HOLE = native.FALLOC_FL_PUNCH_HOLE | native.FALLOC_FL_KEEP_SIZE
const ZERO_RANGE = native.FALLOC_FL_ZERO_RANGE | native.FALLOC_FL_KEEP_SIZE
/** Largest write of the zero run (write-zeroes fallback) and largest bounce buffer. */
const CHUNK = 1 << 20
const PAGE_SIZE = 4096

/** What a request is doing now. */
const Step = {
  Read: 0,
  Write: 1,
  /** FLUSH, or the fdatasync that ends a writethrough write-zeroes. */
  Sync: 2,
  /** Discarding range `range`. */
  Discard: 3,
  /** fallocate(mode) of range `range`. */
  ZeroAlloc: 4,
  /** Writing zeroes over range `range`. */
  ZeroWrite: 5,
} as const
type Step = (typeof Step)[keyof typeof Step]

const OP_NAMES = ['read', 'write', 'flush', 'discard', 'write-zeroes', 'get-id']

/** The write-cache state the driver follows: the virtio device's `wce` (1 writeback, 0 writethrough). */
export interface WriteCacheState {
  readonly wce: number
}

/** How to open a file disk. */
export interface FileDiskOptions {
  /** Raw image: a regular file or a block device. */
  path: string
  /** Open read-only (shared lock); the GenDisk must be read-only too. */
  readOnly: boolean
  /** Open with O_DIRECT. */
  direct: boolean
  /** Create a missing file or grow a shorter one to this many bytes (sparse). */
  sizeBytes?: number
  /** The GenDisk's logical block size. */
  logicalBlockSize: number
  /** `undefined`: sync for an image in memory, else io_uring where available, else threads (logged). */
  engine?: IoEngineName
  /** Requests in flight at most (all tags of the tag set): sizes the io_uring queues. */
  maxInFlight: number
  /** Cache mode until {@link FileDisk.attachWriteCache} is called. */
  writeback: boolean
  log: DiskLogger
}

/** What serving an open image needs of {@link FileDiskOptions}. */
export type EngineChoice = Pick<FileDiskOptions, 'engine' | 'maxInFlight' | 'writeback' | 'log'>

/** Per-request driver state (the request's `pdu`), made once per tag. */
class FileIo implements IoContext {
  /** Stable index: the io_uring user data. */
  readonly index: number
  readonly rq: Request
  /** `rq.generation` when the request was taken. */
  generation = 0
  step: Step = Step.Read
  /** File offset where the current transfer or range starts. */
  position = 0
  /** Bytes of the current transfer or range. */
  total = 0
  /** Bytes of it done. */
  done = 0
  /** Current range of a discard / write-zeroes request. */
  range = 0
  /** fallocate mode of a ZeroAlloc step. */
  mode = 0
  /** Writes durable on completion (writethrough, FUA). */
  dsync = false
  /** Aligned bounce buffer of an O_DIRECT request with unaligned segments, else null. */
  bounce: Uint8Array | null = null
  /** Bytes of the current bounce chunk, and of it transferred. */
  chunk = 0
  chunkDone = 0
  /** One-segment vector for the bounce buffer and the zero run. */
  readonly oneBuffer: Uint8Array[] = [EMPTY_SEGMENT]
  readonly oneOffset = new Uint32Array(1)
  readonly oneLength = new Uint32Array(1)
  /** Link in the list of requests waiting for the engine to take their next operation. */
  nextDeferred: FileIo | null = null

  constructor(index: number, rq: Request) {
    this.index = index
    this.rq = rq
  }
}

/** Maps `bytes` (page multiple) of fresh zeroed memory, page-aligned as O_DIRECT wants. */
function mapAligned(bytes: number, writable: boolean): Uint8Array {
  const fd = native.memfdCreate('vhost-user-blk-buffer', bytes)
  try {
    return new Uint8Array(native.mmap(fd, bytes, 0, writable))
  } finally {
    native.close(fd)
  }
}

/**
 * Copies between the request's segments, from byte `from` of their concatenation on, and
 * `buf[0, len)`: into the segments when `toSegments`, else out of them.
 */
function copySegments(rq: Request, from: number, buf: Uint8Array, len: number, toSegments: boolean): void {
  let skip = from
  let at = 0
  for (let i = 0; i < rq.nrSegments && at < len; i++) {
    const segLen = rq.segLength[i]
    if (skip >= segLen) {
      skip -= segLen
      continue
    }
    const start = rq.segOffset[i] + skip
    const n = Math.min(segLen - skip, len - at)
    skip = 0
    if (toSegments) rq.segBuffer[i].set(buf.subarray(at, at + n), start)
    else buf.set(rq.segBuffer[i].subarray(start, start + n), at)
    at += n
  }
}

/** Zeroes the request's segments from byte `from` of their concatenation to the end. */
function zeroSegments(rq: Request, from: number): void {
  let skip = from
  for (let i = 0; i < rq.nrSegments; i++) {
    const segLen = rq.segLength[i]
    if (skip >= segLen) {
      skip -= segLen
      continue
    }
    rq.segBuffer[i].fill(0, rq.segOffset[i] + skip, rq.segOffset[i] + segLen)
    skip = 0
  }
}

/** A raw image served through an I/O engine. */
export class FileDisk implements Operations {
  /** The open, locked image. */
  readonly image: Image
  private readonly engine: IoEngine<FileIo>
  private readonly ios: FileIo[] = []
  private readonly fd: number
  private readonly direct: boolean
  /** Masks an O_DIRECT segment's address and length must clear (0 without O_DIRECT). */
  private readonly addressMask: number
  private readonly lengthMask: number
  private readonly errors: IoErrorLog
  private readonly log: DiskLogger
  private cache: WriteCacheState
  /** False once the image refused a discard: discards then succeed without effect. */
  private discardWorks = true
  /** False once the image refused PUNCH_HOLE resp. ZERO_RANGE for write-zeroes. */
  private punchWorks = true
  private zeroRangeWorks = true
  /** The zero run for the write-zeroes fallback (read-only mapping), made on first use. */
  private zeroes: Uint8Array | null = null
  private deferredHead: FileIo | null = null
  private deferredTail: FileIo | null = null
  private retryTimer: NodeJS.Timeout | null = null
  private retryArmed = false
  /** Set while retryDeferred walks the list. */
  private retrying = false
  private closed = false

  /**
   * Opens, locks and measures the image and starts the I/O engine.
   *
   * @throws DiskError (`EDISK_*`) naming the image and what is wrong
   */
  static open(opts: FileDiskOptions): FileDisk {
    const image = openImage(opts)
    try {
      return new FileDisk(image, opts, true)
    } catch (err) {
      fs.closeSync(image.fd)
      throw err
    }
  }

  /**
   * Another instance over an image a FileDisk opened (for an I/O thread: fd numbers are
   * process-wide): the same fd and lock, an engine of its own. close() leaves the image open; the
   * opener must outlive this instance.
   */
  static share(image: Image, opts: EngineChoice): FileDisk {
    return new FileDisk(image, opts, false)
  }

  private constructor(image: Image, opts: EngineChoice, private readonly ownsImage: boolean) {
    this.image = image
    this.fd = image.fd
    this.direct = image.directAlignment !== null
    this.addressMask = this.direct ? image.directAlignment!.memory - 1 : 0
    this.lengthMask = this.direct ? image.directAlignment!.offset - 1 : 0
    this.log = opts.log
    this.errors = new IoErrorLog(opts.log, image.path)
    this.cache = { wce: opts.writeback ? 1 : 0 }
    const sink: IoSink<FileIo> = {
      complete: (io, res) => this.onComplete(io, res),
      batchEnd: () => {
        if (this.deferredHead !== null) this.retryDeferred()
      },
    }
    this.engine = createEngine({
      name: opts.engine,
      inMemory: image.inMemory,
      contexts: this.ios,
      sink,
      maxInFlight: opts.maxInFlight,
      onFallback: (reason) =>
        opts.log.warn({ image: image.path, reason }, 'io_uring is unavailable: doing file I/O on the libuv thread pool instead'),
    })
  }

  /** The engine in use. */
  get engineName(): IoEngineName {
    return this.engine.name
  }

  /** Follow the virtio device's write-cache bit from now on (its `wce` field, read per request). */
  attachWriteCache(state: WriteCacheState): void {
    this.cache = state
  }

  /** Gives each preallocated request its `FileIo` (index = io_uring user data). */
  initRequest(rq: Request): void {
    const io = new FileIo(this.ios.length, rq)
    this.ios.push(io)
    rq.pdu = io
  }

  /** Starts the request's first operation; RESOURCE when the engine is full even after a submit. */
  queueRq(rq: Request, isLast: boolean): BlkStatus {
    const io = rq.pdu as FileIo
    io.generation = rq.generation
    switch (rq.op) {
      case ReqOp.Read:
      case ReqOp.Write:
        io.step = rq.op === ReqOp.Read ? Step.Read : Step.Write
        io.position = rq.sector * SECTOR_SIZE
        io.total = rq.sectors * SECTOR_SIZE
        io.done = 0
        io.dsync = rq.op === ReqOp.Write && (this.cache.wce === 0 || (rq.flags & ReqFlag.FUA) !== 0)
        if (this.direct && this.misaligned(rq)) this.startBounce(io)
        break
      case ReqOp.Flush:
        io.step = Step.Sync
        break
      case ReqOp.Discard:
      case ReqOp.WriteZeroes:
        io.range = 0
        io.dsync = rq.op === ReqOp.WriteZeroes && this.cache.wce === 0
        if ((rq.op === ReqOp.Discard && !this.discardWorks) || !this.selectRange(io)) {
          rq.endOk(io.generation)
          return BlkStatus.OK
        }
        break
      default:
        return BlkStatus.NOTSUPP
    }
    if (!this.issue(io)) {
      this.engine.submit()
      if (!this.issue(io)) {
        this.dropBounce(io)
        return BlkStatus.RESOURCE
      }
    }
    if (isLast) this.engine.submit()
    return BlkStatus.OK
  }

  /** End of a batch: one io_uring_enter for everything queueRq prepared. */
  commitRqs(): void {
    this.engine.submit()
  }

  /** Stops the engine and closes the image it opened (dropping its lock). Call with nothing in flight. */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.engine.close()
    this.errors.close()
    if (this.zeroes !== null) native.unmap(this.zeroes.buffer as ArrayBuffer)
    if (this.ownsImage) fs.closeSync(this.fd)
  }

  /**
   * Starts the current step's operation on the engine. False when the engine cannot take it now.
   * Idempotent until it returns true: it only reads the request's state.
   */
  private issue(io: FileIo): boolean {
    const rq = io.rq
    const engine = this.engine
    switch (io.step) {
      case Step.Read:
        if (io.bounce !== null) {
          return engine.readv(io, this.fd, io.oneBuffer, io.oneOffset, io.oneLength, 1, io.chunkDone, io.position + io.done)
        }
        return engine.readv(io, this.fd, rq.segBuffer, rq.segOffset, rq.segLength, rq.nrSegments, io.done, io.position)
      case Step.Write:
        if (io.bounce !== null) {
          return engine.writev(io, this.fd, io.oneBuffer, io.oneOffset, io.oneLength, 1, io.chunkDone, io.position + io.done, io.dsync)
        }
        return engine.writev(io, this.fd, rq.segBuffer, rq.segOffset, rq.segLength, rq.nrSegments, io.done, io.position, io.dsync)
      case Step.Sync:
        return engine.fdatasync(io, this.fd)
      case Step.Discard:
        return this.image.blockDevice
          ? engine.blkDiscard(io, this.fd, io.position, io.total)
          : engine.fallocate(io, this.fd, PUNCH_HOLE, io.position, io.total)
      case Step.ZeroAlloc:
        return engine.fallocate(io, this.fd, io.mode, io.position, io.total)
      case Step.ZeroWrite: {
        io.oneLength[0] = Math.min(CHUNK, io.total - io.done)
        return engine.writev(io, this.fd, io.oneBuffer, io.oneOffset, io.oneLength, 1, 0, io.position + io.done, false)
      }
    }
  }

  /** An operation finished: continue the request, or end it. */
  private onComplete(io: FileIo, res: number): void {
    const rq = io.rq
    switch (io.step) {
      case Step.Read:
        if (res < 0) return this.fail(io, res)
        if (res === 0) return this.readPastEnd(io)
        if (this.transferred(io, res)) return this.reissue(io)
        rq.bytesDone = io.total
        return this.finish(io, BlkStatus.OK)
      case Step.Write:
        if (res <= 0) return this.fail(io, res === 0 ? -ENOSPC : res)
        if (this.transferred(io, res)) return this.reissue(io)
        return this.finish(io, BlkStatus.OK)
      case Step.Sync:
        if (res < 0) return this.fail(io, res)
        return this.finish(io, BlkStatus.OK)
      case Step.Discard:
        if (res === -EOPNOTSUPP) {
          this.discardWorks = false
          this.log.info({ image: this.image.path }, 'the image does not support discard: discards succeed without effect')
          return this.finish(io, BlkStatus.OK)
        }
        if (res < 0) return this.fail(io, res)
        return this.nextRange(io)
      case Step.ZeroAlloc:
        if (res === -EOPNOTSUPP) {
          if (io.mode === PUNCH_HOLE) this.punchWorks = false
          else this.zeroRangeWorks = false
          this.chooseZeroing(io)
          return this.reissue(io)
        }
        if (res < 0) return this.fail(io, res)
        return this.nextRange(io)
      case Step.ZeroWrite:
        if (res <= 0) return this.fail(io, res === 0 ? -ENOSPC : res)
        io.done += res
        if (io.done < io.total) return this.reissue(io)
        return this.nextRange(io)
    }
  }

  /**
   * Accounts `res` > 0 bytes of a read or write; true when more remains (the caller reissues).
   * Through a bounce buffer: a finished chunk is copied out (read) and the next one set up.
   */
  private transferred(io: FileIo, res: number): boolean {
    const bounce = io.bounce
    if (bounce === null) {
      io.done += res
      return io.done < io.total
    }
    io.chunkDone += res
    if (io.chunkDone < io.chunk) return true
    if (io.step === Step.Read) copySegments(io.rq, io.done, bounce, io.chunk, true)
    io.done += io.chunk
    if (io.done >= io.total) return false
    this.beginChunk(io)
    return true
  }

  /** A read met end-of-file: what is left reads as zeroes (see the module notes). */
  private readPastEnd(io: FileIo): void {
    const rq = io.rq
    if (io.bounce !== null) {
      copySegments(rq, io.done, io.bounce, io.chunkDone, true)
      io.done += io.chunkDone
    }
    zeroSegments(rq, io.done)
    rq.bytesDone = io.total
    this.finish(io, BlkStatus.OK)
  }

  /** Sets up range `io.range` or the first non-empty one after it; false when none is left. */
  private selectRange(io: FileIo): boolean {
    const rq = io.rq
    while (io.range < rq.nrRanges && rq.rangeSectors[io.range] === 0) io.range++
    if (io.range === rq.nrRanges) return false
    io.position = rq.rangeSector[io.range] * SECTOR_SIZE
    io.total = rq.rangeSectors[io.range] * SECTOR_SIZE
    io.done = 0
    if (rq.op === ReqOp.Discard) io.step = Step.Discard
    else this.chooseZeroing(io)
    return true
  }

  /** The best write-zeroes method for the current range that the image has not refused. */
  private chooseZeroing(io: FileIo): void {
    const unmap = (io.rq.rangeFlags[io.range] & ReqFlag.UNMAP) !== 0
    if (unmap && this.punchWorks) {
      io.step = Step.ZeroAlloc
      io.mode = PUNCH_HOLE
    } else if (this.zeroRangeWorks) {
      io.step = Step.ZeroAlloc
      io.mode = ZERO_RANGE
    } else {
      this.zeroes ??= mapAligned(CHUNK, false)
      io.step = Step.ZeroWrite
      io.done = 0
      io.oneBuffer[0] = this.zeroes
      io.oneOffset[0] = 0
    }
  }

  /** A range is done: the next one, the closing fdatasync of a writethrough write-zeroes, or the end. */
  private nextRange(io: FileIo): void {
    io.range++
    if (this.selectRange(io)) return this.reissue(io)
    io.oneBuffer[0] = EMPTY_SEGMENT
    if (io.dsync) {
      io.dsync = false
      io.step = Step.Sync
      return this.reissue(io)
    }
    this.finish(io, BlkStatus.OK)
  }

  /** Starts the request's next operation from a completion; waits for room if the engine is full. */
  private reissue(io: FileIo): void {
    if (this.issue(io)) return
    this.engine.submit()
    if (!this.issue(io)) this.defer(io)
  }

  /** Fails the request with the status for errno `res` (< 0), logging it (rate-limited). */
  private fail(io: FileIo, res: number): void {
    const rq = io.rq
    const fields: Record<string, unknown> = { op: OP_NAMES[rq.op], engine: this.engine.name }
    if (io.step !== Step.Sync) fields.sector = Math.floor((io.position + io.done) / SECTOR_SIZE)
    this.errors.report(res, fields)
    this.finish(io, res === -ENOSPC || res === -EDQUOT ? BlkStatus.NOSPC : BlkStatus.IOERR)
  }

  /** Ends the request; the last thing any path does, since `end()` may reuse the tag at once. */
  private finish(io: FileIo, status: BlkStatus): void {
    this.dropBounce(io)
    io.oneBuffer[0] = EMPTY_SEGMENT
    io.rq.end(status, io.generation)
  }

  /** True if an O_DIRECT transfer cannot use the request's segments as they are. */
  private misaligned(rq: Request): boolean {
    for (let i = 0; i < rq.nrSegments; i++) {
      // INVARIANT: segment buffers are views over page-aligned mappings (guest memory windows are
      // mmap'd), so the offset within the ArrayBuffer has the address's low bits.
      const address = rq.segBuffer[i].byteOffset + rq.segOffset[i]
      if ((address & this.addressMask) !== 0 || (rq.segLength[i] & this.lengthMask) !== 0) return true
    }
    return false
  }

  private startBounce(io: FileIo): void {
    const size = Math.ceil(Math.min(CHUNK, io.total) / PAGE_SIZE) * PAGE_SIZE
    io.bounce = mapAligned(size, true)
    io.oneBuffer[0] = io.bounce
    io.oneOffset[0] = 0
    this.beginChunk(io)
  }

  /** Sets up the bounce chunk at `io.done`; a write copies its data in. */
  private beginChunk(io: FileIo): void {
    const bounce = io.bounce!
    io.chunk = Math.min(bounce.length, io.total - io.done)
    io.chunkDone = 0
    io.oneLength[0] = io.chunk
    if (io.step === Step.Write) copySegments(io.rq, io.done, bounce, io.chunk, false)
  }

  private dropBounce(io: FileIo): void {
    if (io.bounce === null) return
    native.unmap(io.bounce.buffer as ArrayBuffer)
    io.bounce = null
  }

  private defer(io: FileIo): void {
    io.nextDeferred = null
    if (this.deferredTail !== null) this.deferredTail.nextDeferred = io
    else this.deferredHead = io
    this.deferredTail = io
    this.armRetry()
  }

  /**
   * Starts deferred operations in order while the engine takes them. Not reentrant: a submit in
   * here delivers completions, whose batch end would walk the same list (and issue twice).
   */
  private retryDeferred(): void {
    if (this.retrying) return
    this.retrying = true
    let io = this.deferredHead
    while (io !== null) {
      if (!this.issue(io)) {
        this.engine.submit()
        if (!this.issue(io)) break
      }
      io = io.nextDeferred
    }
    this.retrying = false
    this.deferredHead = io
    if (io === null) this.deferredTail = null
    else this.armRetry()
  }

  /**
   * Retry soon even if no completion comes (the engine was full of entries the kernel had not
   * taken yet, not of operations in flight). One timer, refreshed.
   */
  private armRetry(): void {
    if (this.retryArmed || this.closed) return
    this.retryArmed = true
    if (this.retryTimer === null) {
      this.retryTimer = setTimeout(() => {
        this.retryArmed = false
        if (this.deferredHead !== null) this.retryDeferred()
        this.engine.submit()
      }, 1)
    } else {
      this.retryTimer.refresh()
    }
  }
}
