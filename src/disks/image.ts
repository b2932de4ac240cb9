/**
 * Opening a raw image for the file disk: a regular file or a block device. Control path only.
 *
 * Owns: the open flags (O_RDONLY for read-only, O_DIRECT on request), the image lock, creating or
 * growing a file to a requested size (sparse, with ftruncate), measuring it (st_size, or
 * BLKGETSIZE64 for a block device), the direct-I/O alignment and whether the file lives in memory
 * (tmpfs). Does not do I/O on the data.
 *
 * The lock is an OFD lock (fcntl F_OFD_SETLK) over the whole file: a write lock when serving
 * read-write, a read lock when read-only. So a second server cannot open an image another one
 * writes, two read-only servers may share one, and QEMU (whose file-posix driver takes OFD locks
 * on single bytes of the same image) conflicts with a writer too. The lock is taken before the
 * file is grown, and lives exactly as long as the fd.
 */
import fs from 'node:fs'
import * as native from '../native/index.js'
import { DiskError } from './errors.js'

/** How to open an image. */
export interface ImageOptions {
  /** Path of a regular file or a block device. */
  path: string
  /** Open O_RDONLY and take a shared (read) lock. */
  readOnly: boolean
  /** Open with O_DIRECT (bypass the host page cache). */
  direct: boolean
  /** Create a missing file, or grow a shorter one, to this many bytes (sparse). Not with readOnly. */
  sizeBytes?: number
  /** The disk's logical block size: the image is served in whole blocks of it. */
  logicalBlockSize: number
}

/** An open, locked image. The fd belongs to the caller, who closes it (which drops the lock). */
export interface Image {
  readonly fd: number
  readonly path: string
  /** Whether it is a block device (discard and write-zeroes go to the device, not a filesystem). */
  readonly blockDevice: boolean
  /** Size in bytes, rounded down to whole logical blocks (what the guest sees). */
  readonly capacityBytes: number
  /** Size in bytes of the file or device. */
  readonly sizeBytes: number
  /** Physical block size worth telling the guest (the device's, or the logical block size for files). */
  readonly physicalBlockSize: number
  /** With O_DIRECT: buffer-address and offset/length alignment in bytes; otherwise null. */
  readonly directAlignment: native.DirectIoAlignment | null
  /** A file on tmpfs or ramfs: its I/O is a copy in memory, never a wait for storage. */
  readonly inMemory: boolean
}

/** statfs f_type of the filesystems that keep files in memory: tmpfs, ramfs. */
const MEMORY_FILESYSTEMS = [0x01021994, 0x858458f6]

/** Whether the regular file open on `fd` lives on a filesystem in memory. */
function onMemoryFilesystem(fd: number): boolean {
  // The fd's /proc link names the file that is open, even if its path was replaced meanwhile.
  return MEMORY_FILESYSTEMS.includes(fs.statfsSync(`/proc/self/fd/${fd}`).type)
}

/**
 * Direct-I/O alignment assumed for a file whose filesystem does not report one (statx
 * STATX_DIOALIGN needs Linux 6.1): page-aligned buffers (a bounce buffer is cheap) and the
 * smallest sector for offsets.
 */
const FALLBACK_DIRECT_ALIGNMENT: native.DirectIoAlignment = { memory: 4096, offset: 512 }

function systemCode(err: unknown): string {
  return (err as { code?: string }).code ?? 'UNKNOWN'
}

/** Opens, locks and measures the image; every failure is a {@link DiskError} and leaves nothing open. */
export function openImage(opts: ImageOptions): Image {
  const { path, readOnly, direct, sizeBytes } = opts
  let flags = readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR
  if (direct) flags |= fs.constants.O_DIRECT
  if (sizeBytes !== undefined && !readOnly) flags |= fs.constants.O_CREAT
  let fd: number
  try {
    fd = fs.openSync(path, flags, 0o644)
  } catch (err) {
    const code = systemCode(err)
    if (code === 'ENOENT') throw new DiskError('EDISK_NOT_FOUND', `${path}: no such file (give --size to create it)`, err)
    if (code === 'EINVAL' && direct) throw new DiskError('EDISK_DIRECT', `${path}: the filesystem does not support O_DIRECT (--direct)`, err)
    throw new DiskError('EDISK_OPEN', `cannot open ${path}: ${code}`, err)
  }
  try {
    return measure(fd, opts)
  } catch (err) {
    fs.closeSync(fd)
    throw err
  }
}

function measure(fd: number, opts: ImageOptions): Image {
  const { path, readOnly, direct, sizeBytes, logicalBlockSize } = opts
  const st = fs.fstatSync(fd)
  if (!st.isFile() && !st.isBlockDevice()) throw new DiskError('EDISK_OPEN', `${path} is neither a regular file nor a block device`)
  if (!native.ofdLock(fd, !readOnly)) {
    throw new DiskError('EDISK_LOCKED',
      `${path} is locked by another process: it is being ${readOnly ? 'written' : 'used'} elsewhere ` +
      '(only read-only servers may share an image)')
  }
  const blockDevice = st.isBlockDevice()
  let size: number
  let physicalBlockSize = logicalBlockSize
  let directAlignment: native.DirectIoAlignment | null = null
  if (blockDevice) {
    const dev = native.blockDeviceInfo(fd)
    size = dev.size
    if (logicalBlockSize < dev.logicalBlockSize) {
      throw new DiskError('EDISK_BLOCK_SIZE',
        `${path} has ${dev.logicalBlockSize}-byte sectors: serve it with --logical-block-size ${dev.logicalBlockSize}`)
    }
    if (dev.physicalBlockSize > logicalBlockSize && dev.physicalBlockSize <= 1 << 20) physicalBlockSize = dev.physicalBlockSize
    if (sizeBytes !== undefined && sizeBytes > size) {
      throw new DiskError('EDISK_SIZE', `${path} is a block device of ${size} bytes: it cannot grow to ${sizeBytes}`)
    }
    if (direct) directAlignment = native.directIoAlignment(fd) ?? { memory: dev.logicalBlockSize, offset: dev.logicalBlockSize }
  } else {
    size = st.size
    if (sizeBytes !== undefined && sizeBytes > size) {
      try {
        fs.ftruncateSync(fd, sizeBytes)
      } catch (err) {
        throw new DiskError('EDISK_OPEN', `cannot grow ${path} to ${sizeBytes} bytes: ${systemCode(err)}`, err)
      }
      size = sizeBytes
    }
    if (direct) directAlignment = native.directIoAlignment(fd) ?? FALLBACK_DIRECT_ALIGNMENT
  }
  if (directAlignment !== null && logicalBlockSize % directAlignment.offset !== 0) {
    throw new DiskError('EDISK_BLOCK_SIZE',
      `${path} needs ${directAlignment.offset}-byte aligned direct I/O: use --logical-block-size ${directAlignment.offset} with --direct`)
  }
  const capacityBytes = size - (size % logicalBlockSize)
  if (capacityBytes === 0) {
    throw new DiskError('EDISK_SIZE', `${path} holds no whole ${logicalBlockSize}-byte block (give --size to grow it)`)
  }
  const inMemory = !blockDevice && onMemoryFilesystem(fd)
  return { fd, path, blockDevice, capacityBytes, sizeBytes: size, physicalBlockSize, directAlignment, inMemory }
}
