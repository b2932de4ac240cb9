/**
 * Turns a walked descriptor chain into an mq Request, or into an immediate answer.
 *
 * Parses by bytes, not by descriptor: the 16-byte header may share a descriptor with data, and
 * the status byte is the last byte of the last device-writable buffer (virtio 1.2 §5.2.6; Linux
 * always puts it there). A malformed request is not an exception: it gets a status (Firecracker's
 * rule), and only the request fails.
 *
 * Owns request validation. Does not touch the ring (queue.ts) or the disk (drivers).
 */
import { BlkStatus, ReqFlag, ReqOp, type GenDisk, type Request } from '../mq/index.js'
import type { DescChain, GuestMemory } from '../virtqueue/index.js'
import {
  SECTOR_SIZE, VIRTIO_BLK_DISCARD_SEGMENT_SIZE, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_OUTHDR_SIZE, VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
} from './spec.js'
import { blkState } from './request-state.js'

/** parseRequest's answer when the request goes to the driver. */
export const DISPATCH = -1

const TWO_POW_32 = 0x1_0000_0000
/** Largest sector a u64 may name that still fits a double exactly. */
const MAX_SAFE_SECTOR = Number.MAX_SAFE_INTEGER / SECTOR_SIZE

/**
 * Scratch space for reading small structures (the header, discard segments) that may straddle
 * descriptors. One per queue, so parsing allocates nothing.
 */
export class ParseScratch {
  readonly bytes = new Uint8Array(VIRTIO_BLK_DISCARD_SEGMENT_SIZE)
  readonly view = new DataView(this.bytes.buffer)
}

/**
 * Copies `n` (≤ 16) bytes of the chain's readable part, starting `from` bytes in, into
 * scratch. False if the readable part is too short.
 */
function readReadable(mem: GuestMemory, chain: DescChain, from: number, n: number, scratch: ParseScratch): boolean {
  if (from + n > chain.readableBytes) return false
  let skip = from
  let got = 0
  for (let i = 0; i < chain.readableCount && got < n; i++) {
    const len = chain.length[i]
    if (skip >= len) {
      skip -= len
      continue
    }
    const src = mem.windows[chain.window[i]].bytes
    let off = chain.offset[i] + skip
    const end = chain.offset[i] + len
    skip = 0
    while (off < end && got < n) scratch.bytes[got++] = src[off++]
  }
  return true
}

/** Reads a little-endian u64 sector at `at`; -1 if it exceeds what a double holds exactly. */
function sectorAt(view: DataView, at: number): number {
  const hi = view.getUint32(at + 4, true)
  const sector = hi * TWO_POW_32 + view.getUint32(at, true)
  return sector > MAX_SAFE_SECTOR ? -1 : sector
}

/**
 * Fills the request's data segments from the chain's segments [first, last), skipping `skip`
 * bytes at the front and leaving `trim` bytes off the end. Returns the data length, or -1 when the
 * request has more segments than it can hold.
 */
function fillSegments(mem: GuestMemory, chain: DescChain, rq: Request, first: number, last: number, skip: number, trim: number): number {
  let total = 0
  let n = 0
  let remainingTrim = trim
  // Work out how many bytes of the tail to drop per segment, walking backwards once.
  let end = last
  while (end > first && remainingTrim > 0) {
    const len = chain.length[end - 1]
    if (len > remainingTrim) break
    remainingTrim -= len
    end--
  }
  for (let i = first; i < end; i++) {
    let off = chain.offset[i]
    let len = chain.length[i]
    if (skip > 0) {
      const cut = Math.min(skip, len)
      off += cut
      len -= cut
      skip -= cut
    }
    if (i === end - 1) len -= remainingTrim
    if (len === 0) continue
    if (n === rq.segBuffer.length) return -1
    rq.segBuffer[n] = mem.windows[chain.window[i]].bytes
    rq.segOffset[n] = off
    rq.segLength[n] = len
    n++
    total += len
  }
  rq.nrSegments = n
  return total
}

/** Checks a sector range against the disk: alignment to the logical block, bounds. */
function rangeOk(disk: GenDisk, sector: number, sectors: number): boolean {
  const sectorsPerBlock = disk.logicalBlockSize / SECTOR_SIZE
  // INVARIANT: sector ≤ MAX_SAFE_SECTOR and sectors < 2^32, so the sum is exact.
  return sector % sectorsPerBlock === 0 && sectors % sectorsPerBlock === 0 && sector + sectors <= disk.capacitySectors
}

/** IN / OUT: data segments, length and range checks. */
function parseReadWrite(mem: GuestMemory, chain: DescChain, disk: GenDisk, rq: Request, isWrite: boolean, sector: number): number {
  if (isWrite && disk.readOnly) return BlkStatus.IOERR
  const len = isWrite
    ? fillSegments(mem, chain, rq, 0, chain.readableCount, VIRTIO_BLK_OUTHDR_SIZE, 0)
    : fillSegments(mem, chain, rq, chain.readableCount, chain.count, 0, 1)
  if (len < 0) return BlkStatus.IOERR
  // virtio 1.2 §5.2.6.1: data length is a multiple of 512 bytes.
  if (len % SECTOR_SIZE !== 0 || len > disk.maxSectors * SECTOR_SIZE) return BlkStatus.IOERR
  const sectors = len / SECTOR_SIZE
  if (sector < 0 || !rangeOk(disk, sector, sectors)) return BlkStatus.IOERR
  if (sectors === 0) return BlkStatus.OK
  rq.op = isWrite ? ReqOp.Write : ReqOp.Read
  rq.sector = sector
  rq.sectors = sectors
  return DISPATCH
}

/** DISCARD / WRITE_ZEROES: an array of 16-byte segments after the header. */
function parseRanges(mem: GuestMemory, chain: DescChain, disk: GenDisk, rq: Request, isDiscard: boolean, scratch: ParseScratch): number {
  const limits = isDiscard ? disk.discard : disk.writeZeroes
  if (limits === null) return BlkStatus.NOTSUPP
  if (disk.readOnly) return BlkStatus.IOERR
  const payload = chain.readableBytes - VIRTIO_BLK_OUTHDR_SIZE
  const count = payload / VIRTIO_BLK_DISCARD_SEGMENT_SIZE
  if (payload <= 0 || !Number.isInteger(count) || count > limits.maxSegments || count > rq.rangeSector.length) return BlkStatus.IOERR
  for (let i = 0; i < count; i++) {
    readReadable(mem, chain, VIRTIO_BLK_OUTHDR_SIZE + i * VIRTIO_BLK_DISCARD_SEGMENT_SIZE, VIRTIO_BLK_DISCARD_SEGMENT_SIZE, scratch)
    const sector = sectorAt(scratch.view, 0)
    const sectors = scratch.view.getUint32(8, true)
    const flags = scratch.view.getUint32(12, true)
    // virtio 1.2 §5.2.6.2: unknown flags, or UNMAP on DISCARD, are UNSUPP.
    if ((flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0 || (isDiscard && flags !== 0)) return BlkStatus.NOTSUPP
    if (sector < 0 || sectors > limits.maxSectors || !rangeOk(disk, sector, sectors)) return BlkStatus.IOERR
    rq.rangeSector[i] = sector
    rq.rangeSectors[i] = sectors
    rq.rangeFlags[i] = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ? ReqFlag.UNMAP : 0
  }
  rq.nrRanges = count
  rq.op = isDiscard ? ReqOp.Discard : ReqOp.WriteZeroes
  return DISPATCH
}

/** GET_ID is answered here: the serial is a property of the disk, not I/O. */
function answerGetId(mem: GuestMemory, chain: DescChain, disk: GenDisk, rq: Request): number {
  const len = fillSegments(mem, chain, rq, chain.readableCount, chain.count, 0, 1)
  if (len <= 0) return BlkStatus.IOERR
  const want = Math.min(len, VIRTIO_BLK_ID_BYTES)
  let written = 0
  for (let s = 0; s < rq.nrSegments && written < want; s++) {
    const buf = rq.segBuffer[s]
    const off = rq.segOffset[s]
    const n = Math.min(rq.segLength[s], want - written)
    // The id is NUL-padded when shorter than 20 bytes (virtio 1.2 §5.2.6).
    for (let j = 0; j < n; j++, written++) buf[off + j] = written < disk.serial.length ? disk.serial.charCodeAt(written) & 0xff : 0
  }
  rq.bytesDone = written
  return BlkStatus.OK
}

/**
 * Parses the walked chain of `rq` (its BlkRequestState chain). Finds the status byte, reads the
 * header, and either fills the request for the driver (returns DISPATCH) or returns the mq
 * status to end it with now.
 */
export function parseRequest(mem: GuestMemory, disk: GenDisk, rq: Request, scratch: ParseScratch): number {
  const state = blkState(rq)
  const chain = state.chain
  // The status byte: last byte of the last device-writable segment.
  const last = chain.count - 1
  if (chain.count === chain.readableCount || chain.length[last] === 0) {
    state.statusWindow = -1
    return BlkStatus.IOERR
  }
  state.statusWindow = chain.window[last]
  state.statusOffset = chain.offset[last] + chain.length[last] - 1
  let type: number
  let sector: number
  if (chain.readableCount > 0 && chain.length[0] >= VIRTIO_BLK_OUTHDR_SIZE) {
    // The header in one piece (Linux gives it a descriptor of its own): read it in place.
    const view = mem.windows[chain.window[0]].view
    const at = chain.offset[0]
    type = view.getUint32(at, true)
    sector = sectorAt(view, at + 8)
  } else {
    if (!readReadable(mem, chain, 0, VIRTIO_BLK_OUTHDR_SIZE, scratch)) return BlkStatus.IOERR
    type = scratch.view.getUint32(0, true)
    sector = sectorAt(scratch.view, 8)
  }
  switch (type) {
    case VIRTIO_BLK_T_IN:
      return parseReadWrite(mem, chain, disk, rq, false, sector)
    case VIRTIO_BLK_T_OUT:
      return parseReadWrite(mem, chain, disk, rq, true, sector)
    case VIRTIO_BLK_T_FLUSH:
      rq.op = ReqOp.Flush
      return DISPATCH
    case VIRTIO_BLK_T_GET_ID:
      return answerGetId(mem, chain, disk, rq)
    case VIRTIO_BLK_T_DISCARD:
      return parseRanges(mem, chain, disk, rq, true, scratch)
    case VIRTIO_BLK_T_WRITE_ZEROES:
      return parseRanges(mem, chain, disk, rq, false, scratch)
    default:
      return BlkStatus.NOTSUPP
  }
}
