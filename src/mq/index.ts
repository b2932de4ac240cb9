/**
 * Public face of the blk-mq layer: tag sets, hardware queues, requests, disks and the driver
 * interface. Knows nothing of virtio or vhost and imports nothing from other `src` folders.
 */
export { MqError, InvalidArgumentError } from './errors.js'
export type { MqErrorCode } from './errors.js'
export { BlkStatus, ReqOp, ReqFlag } from './status.js'
export { Request, RqState, EMPTY_SEGMENT } from './request.js'
export type { Operations } from './operations.js'
export { HwQueue } from './hw-queue.js'
export { TagSet } from './tag-set.js'
export type { TagSetOptions } from './tag-set.js'
export { GenDisk, GenDiskBuilder, SECTOR_SIZE, MAX_CAPACITY_SECTORS, MAX_SERIAL_BYTES, MAX_NAME_LENGTH } from './gen-disk.js'
export type { DiscardLimits, WriteZeroesLimits } from './gen-disk.js'
