/**
 * virtio-blk constants from the virtio 1.2 specification (§5.2 "Block Device") and the generic
 * virtio feature bits a block device negotiates, plus the `virtio_blk_config` layout codec.
 * Shared by the device model (src/blk) and the userspace frontend (src/frontend).
 *
 * Owns: numbers and byte layouts. Does not own: request parsing, validation policy or which
 * features a device offers.
 *
 * Feature constants are BIT NUMBERS: test them with `hasFeature(features, BIT)`
 * (src/vhost/messages.ts), never `features & BIT`.
 */

// virtio 1.2 §5.2.3: device feature bits.
/** Legacy: device supports request barriers. Not offered by modern devices. */
export const VIRTIO_BLK_F_BARRIER = 0
/** size_max is valid: maximum size of any single segment. */
export const VIRTIO_BLK_F_SIZE_MAX = 1
/** seg_max is valid: maximum number of segments in a request. */
export const VIRTIO_BLK_F_SEG_MAX = 2
/** geometry is valid. */
export const VIRTIO_BLK_F_GEOMETRY = 4
/** The device is read-only. */
export const VIRTIO_BLK_F_RO = 5
/** blk_size is valid: the logical block size. */
export const VIRTIO_BLK_F_BLK_SIZE = 6
/** Legacy: SCSI packet commands. */
export const VIRTIO_BLK_F_SCSI = 7
/** Cache flush command (VIRTIO_BLK_T_FLUSH). */
export const VIRTIO_BLK_F_FLUSH = 9
/** physical_block_exp, alignment_offset, min_io_size, opt_io_size are valid. */
export const VIRTIO_BLK_F_TOPOLOGY = 10
/** The driver can toggle writeback/writethrough through `wce`. */
export const VIRTIO_BLK_F_CONFIG_WCE = 11
/** num_queues is valid: more than one request queue. */
export const VIRTIO_BLK_F_MQ = 12
/** DISCARD command; max_discard_sectors, max_discard_seg, discard_sector_alignment are valid. */
export const VIRTIO_BLK_F_DISCARD = 13
/** WRITE_ZEROES command; max_write_zeroes_sectors, max_write_zeroes_seg, write_zeroes_may_unmap are valid. */
export const VIRTIO_BLK_F_WRITE_ZEROES = 14
/** GET_LIFETIME command. */
export const VIRTIO_BLK_F_LIFETIME = 15
/** SECURE_ERASE command. */
export const VIRTIO_BLK_F_SECURE_ERASE = 16
/** Zoned block device. */
export const VIRTIO_BLK_F_ZONED = 17

// virtio 1.2 §6: reserved (device-independent) feature bits.
/** Legacy: notify when the avail ring becomes empty even with notifications suppressed. */
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24
/** Legacy: the device accepts any descriptor layout. */
export const VIRTIO_F_ANY_LAYOUT = 27
/** Indirect descriptor tables (§2.7.5.3). */
export const VIRTIO_RING_F_INDIRECT_DESC = 28
/** used_event / avail_event notification suppression (§2.7.10). */
export const VIRTIO_RING_F_EVENT_IDX = 29
/** Modern (virtio 1.x) device. */
export const VIRTIO_F_VERSION_1 = 32
/** The device sits behind an IOMMU (addresses are IOVAs). */
export const VIRTIO_F_ACCESS_PLATFORM = 33
/** Packed virtqueue layout (§2.8). */
export const VIRTIO_F_RING_PACKED = 34
/** Buffers are used in the order they were made available. */
export const VIRTIO_F_IN_ORDER = 35

// virtio 1.2 §5.2.6: request types (virtio_blk_outhdr.type).
export const VIRTIO_BLK_T_IN = 0
export const VIRTIO_BLK_T_OUT = 1
export const VIRTIO_BLK_T_FLUSH = 4
export const VIRTIO_BLK_T_GET_ID = 8
export const VIRTIO_BLK_T_GET_LIFETIME = 10
export const VIRTIO_BLK_T_DISCARD = 11
export const VIRTIO_BLK_T_WRITE_ZEROES = 13
export const VIRTIO_BLK_T_SECURE_ERASE = 14

// virtio 1.2 §5.2.6: status byte values.
export const VIRTIO_BLK_S_OK = 0
export const VIRTIO_BLK_S_IOERR = 1
export const VIRTIO_BLK_S_UNSUPP = 2

/** virtio_blk_discard_write_zeroes.flags bit 0: the device may deallocate (WRITE_ZEROES only). */
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1
/** GET_ID writes at most this many bytes (not NUL-terminated when the id fills them). */
export const VIRTIO_BLK_ID_BYTES = 20
/** Sector numbers and counts are always in 512-byte units, whatever blk_size says. */
export const SECTOR_SIZE = 512
/** log2(SECTOR_SIZE). */
export const SECTOR_SHIFT = 9
/** virtio_blk_outhdr: type u32, ioprio u32, sector u64. */
export const VIRTIO_BLK_OUTHDR_SIZE = 16
/** virtio_blk_discard_write_zeroes: sector u64, num_sectors u32, flags u32. */
export const VIRTIO_BLK_DISCARD_SEGMENT_SIZE = 16
/** The in-header of every request type except ZONE_APPEND: one status byte. */
export const VIRTIO_BLK_INHDR_SIZE = 1

/**
 * Byte offsets of `struct virtio_blk_config` fields (virtio 1.2 §5.2.4; anchors.md §2.5).
 * All fields are little-endian.
 */
export const BLK_CONFIG_OFFSETS = {
  capacity: 0, // u64
  sizeMax: 8, // u32
  segMax: 12, // u32
  geometryCylinders: 16, // u16
  geometryHeads: 18, // u8
  geometrySectors: 19, // u8
  blkSize: 20, // u32
  physicalBlockExp: 24, // u8
  alignmentOffset: 25, // u8
  minIoSize: 26, // u16
  optIoSize: 28, // u32
  wce: 32, // u8 (called `writeback` in legacy headers)
  // unused0 u8 @33
  numQueues: 34, // u16
  maxDiscardSectors: 36, // u32
  maxDiscardSeg: 40, // u32
  discardSectorAlignment: 44, // u32
  maxWriteZeroesSectors: 48, // u32
  maxWriteZeroesSeg: 52, // u32
  writeZeroesMayUnmap: 56, // u8
  // unused1 u8[3] @57
  maxSecureEraseSectors: 60, // u32 (not in BlkConfig)
  maxSecureEraseSeg: 64, // u32 (not in BlkConfig)
  secureEraseSectorAlignment: 68, // u32 (not in BlkConfig)
  zoned: 72, // struct virtio_blk_zoned_characteristics, 24 bytes (not in BlkConfig)
} as const

/**
 * Bytes encodeBlkConfig produces: the struct through `write_zeroes_may_unmap` and `unused1[3]`
 * (offset 60), the layout every feature this project offers lives in. The secure-erase and zoned
 * fields that follow (up to 96 bytes) belong to features no backend here offers and that QEMU's
 * vhost-user-blk frontend masks; a device answering a longer GET_CONFIG pads with zeros.
 */
export const BLK_CONFIG_SIZE = 60

/** The `virtio_blk_config` fields up to write_zeroes_may_unmap. Sizes/counts in the spec's units. */
export interface BlkConfig {
  /** Capacity in 512-byte sectors. */
  capacity: number
  /** Largest single segment in bytes (with VIRTIO_BLK_F_SIZE_MAX). */
  sizeMax: number
  /** Most data segments per request (with VIRTIO_BLK_F_SEG_MAX). */
  segMax: number
  geometry: { cylinders: number; heads: number; sectors: number }
  /** Logical block size in bytes (with VIRTIO_BLK_F_BLK_SIZE). */
  blkSize: number
  /** log2(physical block / logical block). */
  physicalBlockExp: number
  /** Offset of the first aligned logical block, in logical blocks. */
  alignmentOffset: number
  /** Suggested minimum I/O size, in logical blocks. */
  minIoSize: number
  /** Optimal I/O size, in logical blocks. */
  optIoSize: number
  /** 1 = writeback cache, 0 = writethrough (with VIRTIO_BLK_F_CONFIG_WCE). */
  wce: number
  /** Number of request queues (with VIRTIO_BLK_F_MQ). */
  numQueues: number
  maxDiscardSectors: number
  maxDiscardSeg: number
  /** In 512-byte sectors. */
  discardSectorAlignment: number
  maxWriteZeroesSectors: number
  maxWriteZeroesSeg: number
  /** 1 when WRITE_ZEROES with the UNMAP flag may deallocate. */
  writeZeroesMayUnmap: number
}

const O = BLK_CONFIG_OFFSETS

/**
 * Encodes `c` into a fresh BLK_CONFIG_SIZE-byte buffer (unused bytes zero). A field that does
 * not fit its width is a caller bug and throws RangeError rather than wrapping silently.
 */
export function encodeBlkConfig(c: BlkConfig): Uint8Array {
  const out = new Uint8Array(BLK_CONFIG_SIZE)
  const dv = new DataView(out.buffer)
  if (!Number.isSafeInteger(c.capacity) || c.capacity < 0) throw new RangeError(`capacity ${c.capacity} is not an integer in [0, 2^53)`)
  dv.setBigUint64(O.capacity, BigInt(c.capacity), true)
  put(dv, O.sizeMax, 4, c.sizeMax, 'sizeMax')
  put(dv, O.segMax, 4, c.segMax, 'segMax')
  put(dv, O.geometryCylinders, 2, c.geometry.cylinders, 'geometry.cylinders')
  put(dv, O.geometryHeads, 1, c.geometry.heads, 'geometry.heads')
  put(dv, O.geometrySectors, 1, c.geometry.sectors, 'geometry.sectors')
  put(dv, O.blkSize, 4, c.blkSize, 'blkSize')
  put(dv, O.physicalBlockExp, 1, c.physicalBlockExp, 'physicalBlockExp')
  put(dv, O.alignmentOffset, 1, c.alignmentOffset, 'alignmentOffset')
  put(dv, O.minIoSize, 2, c.minIoSize, 'minIoSize')
  put(dv, O.optIoSize, 4, c.optIoSize, 'optIoSize')
  put(dv, O.wce, 1, c.wce, 'wce')
  put(dv, O.numQueues, 2, c.numQueues, 'numQueues')
  put(dv, O.maxDiscardSectors, 4, c.maxDiscardSectors, 'maxDiscardSectors')
  put(dv, O.maxDiscardSeg, 4, c.maxDiscardSeg, 'maxDiscardSeg')
  put(dv, O.discardSectorAlignment, 4, c.discardSectorAlignment, 'discardSectorAlignment')
  put(dv, O.maxWriteZeroesSectors, 4, c.maxWriteZeroesSectors, 'maxWriteZeroesSectors')
  put(dv, O.maxWriteZeroesSeg, 4, c.maxWriteZeroesSeg, 'maxWriteZeroesSeg')
  put(dv, O.writeZeroesMayUnmap, 1, c.writeZeroesMayUnmap, 'writeZeroesMayUnmap')
  return out
}

/** Writes an unsigned little-endian field of `width` bytes after a range check. */
function put(dv: DataView, off: number, width: 1 | 2 | 4, v: number, name: string): void {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** (8 * width)) throw new RangeError(`${name} ${v} does not fit ${width} byte(s)`)
  if (width === 1) dv.setUint8(off, v)
  else if (width === 2) dv.setUint16(off, v, true)
  else dv.setUint32(off, v, true)
}

/**
 * Decodes a config-space image starting at offset 0. A shorter buffer is tolerated (a device
 * may expose fewer fields): a field not wholly inside `bytes` reads as 0. A capacity of 2^53
 * sectors or more (beyond any real disk) is clamped to Number.MAX_SAFE_INTEGER.
 */
export function decodeBlkConfig(bytes: Uint8Array): BlkConfig {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const has = (off: number, size: number): boolean => off + size <= bytes.length
  const u8 = (off: number): number => (has(off, 1) ? dv.getUint8(off) : 0)
  const u16 = (off: number): number => (has(off, 2) ? dv.getUint16(off, true) : 0)
  const u32 = (off: number): number => (has(off, 4) ? dv.getUint32(off, true) : 0)
  const cap = has(O.capacity, 8) ? dv.getBigUint64(O.capacity, true) : 0n
  return {
    capacity: cap > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(cap),
    sizeMax: u32(O.sizeMax),
    segMax: u32(O.segMax),
    geometry: { cylinders: u16(O.geometryCylinders), heads: u8(O.geometryHeads), sectors: u8(O.geometrySectors) },
    blkSize: u32(O.blkSize),
    physicalBlockExp: u8(O.physicalBlockExp),
    alignmentOffset: u8(O.alignmentOffset),
    minIoSize: u16(O.minIoSize),
    optIoSize: u32(O.optIoSize),
    wce: u8(O.wce),
    numQueues: u16(O.numQueues),
    maxDiscardSectors: u32(O.maxDiscardSectors),
    maxDiscardSeg: u32(O.maxDiscardSeg),
    discardSectorAlignment: u32(O.discardSectorAlignment),
    maxWriteZeroesSectors: u32(O.maxWriteZeroesSectors),
    maxWriteZeroesSeg: u32(O.maxWriteZeroesSeg),
    writeZeroesMayUnmap: u8(O.writeZeroesMayUnmap),
  }
}
