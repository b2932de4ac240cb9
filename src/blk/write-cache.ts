/**
 * The guest's write-cache mode (virtio-blk config `wce`: 1 writeback, 0 writethrough) in one
 * shared cell. The virtio device on the main thread owns the value (the guest changes it with a
 * config write); drivers on I/O threads read the same cell, so a change is visible to them before
 * the config write is acknowledged, with no message and no lock.
 *
 * Owns the cell only; who may change the mode and when is BlkDevice's business.
 */

/** A shared `wce` cell; drivers read `wce` (the file disk's WriteCacheState). */
export class WriteCacheMode {
  /** The cell's memory: hand it to another thread and wrap it with `new WriteCacheMode(buffer)`. */
  readonly buffer: SharedArrayBuffer
  private readonly cell: Int32Array

  /** A new cell holding `wce` (default writeback), or a view of an existing cell's `buffer`. */
  constructor(init: SharedArrayBuffer | number = 1) {
    this.buffer = init instanceof SharedArrayBuffer ? init : new SharedArrayBuffer(4)
    this.cell = new Int32Array(this.buffer, 0, 1)
    if (typeof init === 'number') this.wce = init
  }

  /** 1 writeback, 0 writethrough. */
  get wce(): number {
    return Atomics.load(this.cell, 0)
  }

  set wce(value: number) {
    Atomics.store(this.cell, 0, value)
  }
}
