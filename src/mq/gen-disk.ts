/**
 * `GenDisk` and `GenDiskBuilder`: what a disk looks like to its users (the kernel's `gendisk` +
 * `queue_limits`, the Rust `kernel::block::mq::gen_disk`).
 *
 * Owns the disk's geometry and limits and their validation: name, capacity, block sizes,
 * read-only, rotational, serial, discard and write-zeroes limits, segment limits. The `blk` layer
 * derives the device's configuration space from them; drivers read them from `rq.disk`. It does
 * not own I/O resources (`TagSet`: several disks may share one) or the data itself (the driver).
 */
import { InvalidArgumentError } from './errors.js'
import type { TagSet } from './tag-set.js'

/** Bytes per sector: every sector number and count in mq is in 512-byte units, as in Linux. */
export const SECTOR_SIZE = 512

/** Largest capacity in sectors whose byte size is still an exact JS number (≤ 2^53 - 1). */
export const MAX_CAPACITY_SECTORS = Math.floor(Number.MAX_SAFE_INTEGER / SECTOR_SIZE)

/** Largest value of a 32-bit limit field. */
const U32_MAX = 0xffff_ffff

/** Longest serial: the virtio-blk GET_ID reply is 20 bytes (virtio 1.2 §5.2.6). */
export const MAX_SERIAL_BYTES = 20

/** Longest disk name, as the kernel's `DISK_NAME_LEN`. */
export const MAX_NAME_LENGTH = 32

/** Discard limits of a disk. */
export interface DiscardLimits {
  /** Most sectors in one discard range, 1..2^32-1. */
  maxSectors: number
  /** Most ranges in one discard request, 1..the tag set's `maxRanges`. */
  maxSegments: number
  /** Discard granularity in sectors: a positive multiple of the logical block size. */
  granularitySectors: number
}

/** Write-zeroes limits of a disk. */
export interface WriteZeroesLimits {
  /** Most sectors in one write-zeroes range, 1..2^32-1. */
  maxSectors: number
  /** Most ranges in one write-zeroes request, 1..the tag set's `maxRanges`. */
  maxSegments: number
  /** Whether a range flagged UNMAP may be deallocated rather than written. */
  mayUnmap: boolean
}

/** The validated values a {@link GenDisk} is made from. */
interface GenDiskConfig {
  name: string
  capacitySectors: number
  logicalBlockSize: number
  physicalBlockSize: number
  readOnly: boolean
  rotational: boolean
  serial: string
  discard: Readonly<DiscardLimits> | null
  writeZeroes: Readonly<WriteZeroesLimits> | null
  maxSegments: number
  maxSegmentSize: number
  maxSectors: number
}

/**
 * A disk served through a {@link TagSet}. Built by {@link GenDiskBuilder}; everything but the
 * capacity is fixed for its lifetime.
 */
export class GenDisk {
  /** Name (for logs and the CLI). */
  readonly name: string
  /** Logical block size in bytes: the unit of addressing and of I/O sizes (512 or 4096...). */
  readonly logicalBlockSize: number
  /** Physical block size in bytes (a power of two ≥ the logical block size). */
  readonly physicalBlockSize: number
  /** Whether writes are refused. */
  readonly readOnly: boolean
  /** Whether the medium is rotational (seek cost). */
  readonly rotational: boolean
  /** Serial reported by GET_ID, at most 20 bytes of UTF-8. */
  readonly serial: string
  /** Discard limits, or null if discard is not supported. */
  readonly discard: Readonly<DiscardLimits> | null
  /** Write-zeroes limits, or null if write-zeroes is not supported. */
  readonly writeZeroes: Readonly<WriteZeroesLimits> | null
  /** Tag set serving the disk's requests. */
  readonly tagSet: TagSet
  /** Most data segments per request (≤ the tag set's `maxSegments`). */
  readonly maxSegments: number
  /** Most bytes in one data segment. */
  readonly maxSegmentSize: number
  /** Most sectors in one read or write request (a multiple of the logical block size). */
  readonly maxSectors: number
  private _capacitySectors: number

  /**
   * Use {@link GenDiskBuilder}; this constructor trusts its (already validated) input.
   * @internal
   */
  constructor(config: GenDiskConfig, tagSet: TagSet) {
    this.name = config.name
    this._capacitySectors = config.capacitySectors
    this.logicalBlockSize = config.logicalBlockSize
    this.physicalBlockSize = config.physicalBlockSize
    this.readOnly = config.readOnly
    this.rotational = config.rotational
    this.serial = config.serial
    this.discard = config.discard
    this.writeZeroes = config.writeZeroes
    this.maxSegments = config.maxSegments
    this.maxSegmentSize = config.maxSegmentSize
    this.maxSectors = config.maxSectors
    this.tagSet = tagSet
  }

  /**
   * Capacity in 512-byte sectors. Assigning resizes the disk (the `blk` layer then announces the
   * change); the new value is validated like the builder's.
   *
   * @throws InvalidArgumentError if not a whole number of logical blocks in 0..MAX_CAPACITY_SECTORS
   */
  get capacitySectors(): number {
    return this._capacitySectors
  }

  set capacitySectors(sectors: number) {
    this._capacitySectors = checkCapacity(sectors, this.logicalBlockSize)
  }

  /** Capacity in bytes (exact: at most 2^53 - 1). */
  get capacityBytes(): number {
    return this._capacitySectors * SECTOR_SIZE
  }
}

/**
 * Chainable builder of a {@link GenDisk}. Setters only record; `build()` validates everything at
 * once, so the order of calls does not matter.
 *
 * Defaults: name `disk`, capacity 0, 512-byte logical and physical blocks, writable,
 * non-rotational, empty serial, no discard, no write-zeroes, the tag set's `maxSegments`,
 * unlimited (2^32-1) segment size and request size.
 */
export class GenDiskBuilder {
  private _name = 'disk'
  private _capacitySectors: number | null = 0
  private _capacityBytes: number | null = null
  private _logicalBlockSize = 512
  private _physicalBlockSize: number | null = null
  private _readOnly = false
  private _rotational = false
  private _serial = ''
  private _discard: DiscardLimits | null = null
  private _writeZeroes: WriteZeroesLimits | null = null
  private _maxSegments: number | null = null
  private _maxSegmentSize = U32_MAX
  private _maxSectors: number | null = null

  /** Disk name, 1..32 characters. */
  name(name: string): this {
    this._name = name
    return this
  }

  /** Capacity in 512-byte sectors (a whole number of logical blocks). Replaces `capacityBytes`. */
  capacitySectors(sectors: number): this {
    this._capacitySectors = sectors
    this._capacityBytes = null
    return this
  }

  /** Capacity in bytes; must be a multiple of the logical block size. Replaces `capacitySectors`. */
  capacityBytes(bytes: number): this {
    this._capacityBytes = bytes
    this._capacitySectors = null
    return this
  }

  /** Logical block size in bytes: a power of two in 512..4096 (default 512). */
  logicalBlockSize(bytes: number): this {
    this._logicalBlockSize = bytes
    return this
  }

  /** Physical block size in bytes: a power of two, ≥ the logical block size, ≤ 1 MiB (default: logical). */
  physicalBlockSize(bytes: number): this {
    this._physicalBlockSize = bytes
    return this
  }

  /** Refuse writes (default false). */
  readOnly(readOnly: boolean): this {
    this._readOnly = readOnly
    return this
  }

  /** Rotational medium (default false). */
  rotational(rotational: boolean): this {
    this._rotational = rotational
    return this
  }

  /** Serial for GET_ID, at most 20 bytes of UTF-8 (default empty). */
  serial(serial: string): this {
    this._serial = serial
    return this
  }

  /** Discard limits, or null for no discard (default). */
  discard(limits: DiscardLimits | null): this {
    this._discard = limits
    return this
  }

  /** Write-zeroes limits, or null for no write-zeroes (default). */
  writeZeroes(limits: WriteZeroesLimits | null): this {
    this._writeZeroes = limits
    return this
  }

  /** Most data segments per request, 1..the tag set's `maxSegments` (default: that maximum). */
  maxSegments(n: number): this {
    this._maxSegments = n
    return this
  }

  /** Most bytes per data segment, 512..2^32-1 (default 2^32-1). */
  maxSegmentSize(bytes: number): this {
    this._maxSegmentSize = bytes
    return this
  }

  /** Most sectors per read/write request: a multiple of the logical block size, ≤ 2^32-1. */
  maxSectors(sectors: number): this {
    this._maxSectors = sectors
    return this
  }

  /**
   * Validate and create the disk, served by `tagSet`.
   *
   * @throws InvalidArgumentError naming the first bad setting
   */
  build(tagSet: TagSet): GenDisk {
    if (tagSet === null || typeof tagSet !== 'object' || !Array.isArray(tagSet.hwQueues)) {
      throw new InvalidArgumentError('GenDisk: build() needs the TagSet that serves the disk')
    }
    const name = this._name
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH) {
      throw new InvalidArgumentError(`GenDisk name must be a string of 1..${MAX_NAME_LENGTH} characters`)
    }
    const lbs = this._logicalBlockSize
    if (!isPowerOfTwoIn(lbs, 512, 4096)) {
      throw new InvalidArgumentError(`GenDisk logicalBlockSize must be a power of two in 512..4096, got ${String(lbs)}`)
    }
    const pbs = this._physicalBlockSize ?? lbs
    if (!isPowerOfTwoIn(pbs, lbs, 1 << 20)) {
      throw new InvalidArgumentError(
        `GenDisk physicalBlockSize must be a power of two in ${lbs}..${1 << 20} (logical block size upwards), got ${String(pbs)}`)
    }
    const sectorsPerBlock = lbs / SECTOR_SIZE
    let capacitySectors: number
    if (this._capacityBytes !== null) {
      const bytes = this._capacityBytes
      if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes % lbs !== 0) {
        throw new InvalidArgumentError(`GenDisk capacityBytes must be a non-negative multiple of the logical block size ${lbs}, got ${String(bytes)}`)
      }
      capacitySectors = checkCapacity(bytes / SECTOR_SIZE, lbs)
    } else {
      capacitySectors = checkCapacity(this._capacitySectors, lbs)
    }
    if (typeof this._readOnly !== 'boolean') throw new InvalidArgumentError('GenDisk readOnly must be a boolean')
    if (typeof this._rotational !== 'boolean') throw new InvalidArgumentError('GenDisk rotational must be a boolean')
    const serial = this._serial
    if (typeof serial !== 'string' || Buffer.byteLength(serial, 'utf8') > MAX_SERIAL_BYTES) {
      throw new InvalidArgumentError(`GenDisk serial must be a string of at most ${MAX_SERIAL_BYTES} UTF-8 bytes`)
    }
    const maxSegments = this._maxSegments ?? tagSet.maxSegments
    checkInt('maxSegments', maxSegments, 1, tagSet.maxSegments)
    checkInt('maxSegmentSize', this._maxSegmentSize, SECTOR_SIZE, U32_MAX)
    const maxSectors = this._maxSectors ?? U32_MAX - (U32_MAX % sectorsPerBlock)
    checkInt('maxSectors', maxSectors, sectorsPerBlock, U32_MAX)
    if (maxSectors % sectorsPerBlock !== 0) {
      throw new InvalidArgumentError(`GenDisk maxSectors must be a multiple of the logical block size (${sectorsPerBlock} sectors)`)
    }
    return new GenDisk({
      name,
      capacitySectors,
      logicalBlockSize: lbs,
      physicalBlockSize: pbs,
      readOnly: this._readOnly,
      rotational: this._rotational,
      serial,
      discard: checkDiscard(this._discard, sectorsPerBlock, tagSet.maxRanges),
      writeZeroes: checkWriteZeroes(this._writeZeroes, tagSet.maxRanges),
      maxSegments,
      maxSegmentSize: this._maxSegmentSize,
      maxSectors,
    }, tagSet)
  }
}

/** Validate a capacity in sectors for a disk with logical block size `lbs`; returns it. */
function checkCapacity(sectors: unknown, lbs: number): number {
  const sectorsPerBlock = lbs / SECTOR_SIZE
  if (typeof sectors !== 'number' || !Number.isInteger(sectors) || sectors < 0 || sectors > MAX_CAPACITY_SECTORS ||
    sectors % sectorsPerBlock !== 0) {
    throw new InvalidArgumentError(
      `GenDisk capacity must be a whole number of ${lbs}-byte blocks, 0..${MAX_CAPACITY_SECTORS} sectors, got ${String(sectors)}`)
  }
  return sectors
}

function checkDiscard(limits: DiscardLimits | null, sectorsPerBlock: number, maxRanges: number): Readonly<DiscardLimits> | null {
  if (limits === null) return null
  if (typeof limits !== 'object') throw new InvalidArgumentError('GenDisk discard must be an object or null')
  checkInt('discard.maxSectors', limits.maxSectors, 1, U32_MAX)
  checkInt('discard.maxSegments', limits.maxSegments, 1, maxRanges)
  checkInt('discard.granularitySectors', limits.granularitySectors, sectorsPerBlock, U32_MAX)
  if (limits.granularitySectors % sectorsPerBlock !== 0) {
    throw new InvalidArgumentError(`GenDisk discard.granularitySectors must be a multiple of the logical block size (${sectorsPerBlock} sectors)`)
  }
  return Object.freeze({ maxSectors: limits.maxSectors, maxSegments: limits.maxSegments, granularitySectors: limits.granularitySectors })
}

function checkWriteZeroes(limits: WriteZeroesLimits | null, maxRanges: number): Readonly<WriteZeroesLimits> | null {
  if (limits === null) return null
  if (typeof limits !== 'object') throw new InvalidArgumentError('GenDisk writeZeroes must be an object or null')
  checkInt('writeZeroes.maxSectors', limits.maxSectors, 1, U32_MAX)
  checkInt('writeZeroes.maxSegments', limits.maxSegments, 1, maxRanges)
  if (typeof limits.mayUnmap !== 'boolean') throw new InvalidArgumentError('GenDisk writeZeroes.mayUnmap must be a boolean')
  return Object.freeze({ maxSectors: limits.maxSectors, maxSegments: limits.maxSegments, mayUnmap: limits.mayUnmap })
}

function checkInt(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`GenDisk ${name} must be an integer in ${min}..${max}, got ${String(value)}`)
  }
}

function isPowerOfTwoIn(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max && (value & (value - 1)) === 0
}
