/**
 * virtio-blk request layout on the driver side, as Linux's virtio_blk lays it out: a 16-byte
 * device-readable out-header {type u32, ioprio u32, sector u64}, then the data buffer (readable
 * for writes, discard/write-zeroes ranges; writable for reads and GET_ID), then one writable status
 * byte (virtio 1.2 §5.2.6).
 *
 * Owns: encoding of headers and range segments and decoding of GET_ID. Does not own submission.
 */
import {
  SECTOR_SIZE, VIRTIO_BLK_DISCARD_SEGMENT_SIZE, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_OUTHDR_SIZE,
} from '../blk/spec.js'
import { VhostUserClientError } from './errors.js'
import type { ChainBuffer } from './queue.js'

/** The status byte holds this until the back-end writes it: a value no device uses (statuses are 0..6). */
export const STATUS_NOT_WRITTEN = 0xff

/** A DISCARD / WRITE_ZEROES range. */
export interface SectorRange {
  /** First 512-byte sector. */
  sector: number
  /** Number of sectors (u32). */
  sectors: number
  /** virtio_blk_discard_write_zeroes.flags (VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP). */
  flags?: number
}

/** The device-readable out-header buffer. */
export function outHeader(type: number, sector: number, ioprio = 0): ChainBuffer {
  checkSector(sector)
  const b = new Uint8Array(VIRTIO_BLK_OUTHDR_SIZE)
  const dv = new DataView(b.buffer)
  dv.setUint32(0, type, true)
  dv.setUint32(4, ioprio, true)
  dv.setUint32(8, sector % 2 ** 32, true)
  dv.setUint32(12, Math.floor(sector / 2 ** 32), true)
  return { data: b, writable: false }
}

/** The writable status buffer, pre-set to STATUS_NOT_WRITTEN. */
export function statusBuffer(): ChainBuffer {
  return { len: 1, writable: true, fill: STATUS_NOT_WRITTEN }
}

/** The readable buffer of `virtio_blk_discard_write_zeroes` segments. */
export function rangesBuffer(ranges: readonly SectorRange[]): ChainBuffer {
  if (ranges.length === 0) throw new VhostUserClientError('EFRONTEND_ARGUMENT', 'no ranges given')
  const b = new Uint8Array(ranges.length * VIRTIO_BLK_DISCARD_SEGMENT_SIZE)
  const dv = new DataView(b.buffer)
  ranges.forEach((r, i) => {
    checkSector(r.sector)
    const flags = r.flags ?? 0
    if (!Number.isInteger(r.sectors) || r.sectors < 0 || r.sectors > 0xffff_ffff || !Number.isInteger(flags) || flags < 0 || flags > 0xffff_ffff) {
      throw new VhostUserClientError('EFRONTEND_ARGUMENT', `range ${i}: sectors ${r.sectors} / flags ${flags} do not fit u32`)
    }
    const o = i * VIRTIO_BLK_DISCARD_SEGMENT_SIZE
    dv.setUint32(o, r.sector % 2 ** 32, true)
    dv.setUint32(o + 4, Math.floor(r.sector / 2 ** 32), true)
    dv.setUint32(o + 8, r.sectors, true)
    dv.setUint32(o + 12, flags, true)
  })
  return { data: b, writable: false }
}

/** The writable GET_ID buffer (VIRTIO_BLK_ID_BYTES). */
export function idBuffer(): ChainBuffer {
  return { len: VIRTIO_BLK_ID_BYTES, writable: true }
}

/** The GET_ID string: the bytes up to the first NUL (the id is not terminated when it fills 20 bytes). */
export function decodeId(bytes: Uint8Array): string {
  const end = bytes.indexOf(0)
  return Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString('latin1')
}

/** Checks a data length for IN/OUT: a positive multiple of 512. */
export function checkDataLength(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % SECTOR_SIZE !== 0) {
    throw new VhostUserClientError('EFRONTEND_ARGUMENT', `data length ${bytes} is not a positive multiple of ${SECTOR_SIZE}`)
  }
}

function checkSector(sector: number): void {
  if (!Number.isSafeInteger(sector) || sector < 0) {
    throw new VhostUserClientError('EFRONTEND_ARGUMENT', `sector ${sector} is not a non-negative integer`)
  }
}
