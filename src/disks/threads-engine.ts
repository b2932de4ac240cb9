/**
 * The threads I/O engine: each operation is one call on the libuv thread pool (Node's
 * fs.readv / fs.writev / fs.fdatasync, and the native fallocate / BLKDISCARD), reported back
 * through its callback. The fallback where io_uring is unavailable.
 *
 * Owns nothing but the translation: segment views, a follow-up fdatasync for a `dsync` write
 * (Node's writev takes no RWF_DSYNC), Node's errors turned into negative errnos. It allocates per
 * operation (views, closures), which is why it is the fallback. Still zero-copy: the views are
 * over the caller's buffers. Completions are always reported later, never from inside a start call.
 */
import fs from 'node:fs'
import * as native from '../native/index.js'
import type { IoContext, IoEngine, IoSink } from './io-engine.js'

/** Views of the segments after `skip` bytes. */
function views(buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array, count: number, skip: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const len = lengths[i]
    if (skip >= len) {
      skip -= len
      continue
    }
    const start = offsets[i] + skip
    out.push(buffers[i].subarray(start, offsets[i] + len))
    skip = 0
  }
  return out
}

/** A Node fs error as a negative errno (libuv's errno is already negative on Linux). */
function errnoOf(err: NodeJS.ErrnoException): number {
  return typeof err.errno === 'number' && err.errno < 0 ? err.errno : -5 /* EIO */
}

/** Thread-pool engine. */
export class ThreadsEngine<C extends IoContext> implements IoEngine<C> {
  readonly name = 'threads'
  private readonly rangeDone: native.RangeCallback<C>

  constructor(private readonly sink: IoSink<C>) {
    this.rangeDone = (ctx, res) => this.done(ctx, res)
  }

  readv(ctx: C, fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number): boolean {
    fs.readv(fd, views(buffers, offsets, lengths, count, skip), position + skip, (err, bytes) =>
      this.done(ctx, err === null ? bytes : errnoOf(err)))
    return true
  }

  writev(ctx: C, fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number, dsync: boolean): boolean {
    fs.writev(fd, views(buffers, offsets, lengths, count, skip), position + skip, (err, bytes) => {
      if (err !== null || !dsync) {
        this.done(ctx, err === null ? bytes : errnoOf(err))
        return
      }
      fs.fdatasync(fd, (syncErr) => this.done(ctx, syncErr === null ? bytes : errnoOf(syncErr)))
    })
    return true
  }

  fdatasync(ctx: C, fd: number): boolean {
    fs.fdatasync(fd, (err) => this.done(ctx, err === null ? 0 : errnoOf(err)))
    return true
  }

  fallocate(ctx: C, fd: number, mode: number, offset: number, length: number): boolean {
    native.fallocateAsync(fd, mode, offset, length, ctx, this.rangeDone)
    return true
  }

  blkDiscard(ctx: C, fd: number, offset: number, length: number): boolean {
    native.blkDiscardAsync(fd, offset, length, ctx, this.rangeDone)
    return true
  }

  submit(): void {
    // Every operation started at once.
  }

  close(): void {
    // Nothing to release: the pool belongs to libuv.
  }

  private done(ctx: C, res: number): void {
    this.sink.complete(ctx, res)
    this.sink.batchEnd()
  }
}
