/**
 * The memory disk: an mq Operations driver over sparse RAM. Storage is held in fixed-size chunks
 * allocated on first write; unwritten sectors read as zeroes; discard and write-zeroes free whole
 * chunks and zero partial ones, so `--memory 1T` starts at once and holds only what was written.
 * Completes inside queueRq, as the example driver in the Linux documentation (null_blk) does.
 *
 * Sees only mq types and byte segments; knows nothing of virtio.
 */
import { BlkStatus, ReqOp, type Operations, type Request } from '../mq/index.js'

const SECTOR_SIZE = 512
/** Chunk size: small enough that scattered 4K writes do not balloon, large enough to keep the map small. */
export const MEMORY_CHUNK_SIZE = 256 * 1024

/** A sparse in-memory disk. */
export class MemoryDisk implements Operations {
  private readonly chunks = new Map<number, Uint8Array>()

  // No capacity here: the blk layer checked every range against the GenDisk before queueRq.

  /** Bytes of RAM the disk holds now. */
  get allocatedBytes(): number {
    return this.chunks.size * MEMORY_CHUNK_SIZE
  }

  queueRq(rq: Request): BlkStatus {
    switch (rq.op) {
      case ReqOp.Read:
        this.copySegments(rq, false)
        rq.bytesDone = rq.sectors * SECTOR_SIZE
        break
      case ReqOp.Write:
        this.copySegments(rq, true)
        break
      case ReqOp.Flush:
        break
      case ReqOp.Discard:
      case ReqOp.WriteZeroes:
        // Discarded sectors read back as zeroes too: a deterministic answer is kinder to guests.
        for (let i = 0; i < rq.nrRanges; i++) this.zero(rq.rangeSector[i] * SECTOR_SIZE, rq.rangeSectors[i] * SECTOR_SIZE)
        break
      default:
        return BlkStatus.NOTSUPP
    }
    rq.endOk()
    return BlkStatus.OK
  }

  /** Reads (or writes) the request's segments from (or to) consecutive disk bytes. */
  private copySegments(rq: Request, write: boolean): void {
    let pos = rq.sector * SECTOR_SIZE
    for (let s = 0; s < rq.nrSegments; s++) {
      const buf = rq.segBuffer[s]
      let off = rq.segOffset[s]
      let len = rq.segLength[s]
      while (len > 0) {
        const index = Math.floor(pos / MEMORY_CHUNK_SIZE)
        const within = pos - index * MEMORY_CHUNK_SIZE
        const n = Math.min(len, MEMORY_CHUNK_SIZE - within)
        let chunk = this.chunks.get(index)
        if (write) {
          if (chunk === undefined) {
            chunk = new Uint8Array(MEMORY_CHUNK_SIZE)
            this.chunks.set(index, chunk)
          }
          chunk.set(buf.subarray(off, off + n), within)
        } else if (chunk === undefined) {
          buf.fill(0, off, off + n)
        } else {
          buf.set(chunk.subarray(within, within + n), off)
        }
        pos += n
        off += n
        len -= n
      }
    }
  }

  /** Zeroes [start, start+len): whole chunks are dropped, partial ones cleared. */
  private zero(start: number, len: number): void {
    let pos = start
    const end = start + len
    while (pos < end) {
      const index = Math.floor(pos / MEMORY_CHUNK_SIZE)
      const within = pos - index * MEMORY_CHUNK_SIZE
      const n = Math.min(end - pos, MEMORY_CHUNK_SIZE - within)
      if (n === MEMORY_CHUNK_SIZE) this.chunks.delete(index)
      else this.chunks.get(index)?.fill(0, within, within + n)
      pos += n
    }
  }
}
