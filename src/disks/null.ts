/**
 * The null disk: an mq Operations driver that ends every request OK at once without touching
 * data, like QEMU's null-co block driver (with its default read-zeroes=off) and Linux's null_blk.
 * It measures what the layers above the driver cost: `bench --null` against it shows the ceiling
 * of the server's request path and of the load generator driving it.
 *
 * Reads report the whole buffer as produced (null-co returns success for the full length too)
 * but leave its bytes as they were. Sees only mq types; knows nothing of virtio.
 */
import { BlkStatus, ReqOp, type Operations, type Request } from '../mq/index.js'

const SECTOR_SIZE = 512

/** A disk that completes every request successfully and stores nothing. */
export class NullDisk implements Operations {
  queueRq(rq: Request): BlkStatus {
    // bytesDone is reset to 0 when the tag frees, so only reads need to set it.
    if (rq.op === ReqOp.Read) rq.bytesDone = rq.sectors * SECTOR_SIZE
    rq.endOk()
    return BlkStatus.OK
  }
}
