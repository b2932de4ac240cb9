/**
 * The I/O engine interface of the file disk, and the choice between engines.
 *
 * An engine starts one system operation at a time per context (a preallocated per-request
 * record) and reports its result as a syscall would: a byte count, 0, or a negative errno. It
 * knows nothing of requests, retries or errors; the file disk (file.ts) owns those.
 *
 * Engines: `io_uring` (uring-engine.ts: zero-copy, batched, nothing allocated per operation),
 * `threads` (threads-engine.ts: Node's fs calls on the libuv thread pool) and `sync`
 * (sync-engine.ts: the system call on the serving thread, for images in memory). Without an
 * explicit choice an image in memory (tmpfs, ramfs) uses sync; any other uses io_uring where the
 * kernel allows it, else threads with a logged warning.
 */
import { DiskError } from './errors.js'
import { SyncEngine } from './sync-engine.js'
import { ThreadsEngine } from './threads-engine.js'
import { UringEngine } from './uring-engine.js'

/** The engines `--io-engine` names. */
export const IO_ENGINES = ['io_uring', 'threads', 'sync'] as const
/** One of {@link IO_ENGINES}. */
export type IoEngineName = (typeof IO_ENGINES)[number]

/** What an engine needs of a context: a stable index (the io_uring user data). */
export interface IoContext {
  /** Index of the context in the array given to the engine. */
  readonly index: number
}

/** Completion of one operation: `res` is a byte count, 0, or a negative errno. */
export type IoCompletion<C> = (ctx: C, res: number) => void

/**
 * Where an engine reports. Both methods are called on the JS thread, never from inside a start
 * call, but possibly from inside `submit()` (operations that finished during it), and never nested.
 */
export interface IoSink<C> {
  /** One operation finished. */
  complete: IoCompletion<C>
  /** A batch of completions was delivered: a good moment to retry what could not start. */
  batchEnd(): void
}

/**
 * Starts operations for contexts. Each start returns false, with nothing started, when the
 * engine cannot take it right now (io_uring: submission queue or iovec arena full); the caller
 * may `submit()` and retry, or retry after the next completion batch. Segments are given the way
 * `Request` holds them: bytes `[offsets[i], offsets[i] + lengths[i])` of `buffers[i]` for
 * `i < count`, mapping to the file from `position` on, the first `skip` bytes left out.
 */
export interface IoEngine<C extends IoContext> {
  readonly name: IoEngineName
  /** preadv of the segments. */
  readv(ctx: C, fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number): boolean
  /** pwritev of the segments; with `dsync` the data is durable when it completes (RWF_DSYNC). */
  writev(ctx: C, fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number, dsync: boolean): boolean
  /** fdatasync. */
  fdatasync(ctx: C, fd: number): boolean
  /** fallocate(fd, mode, offset, length). */
  fallocate(ctx: C, fd: number, mode: number, offset: number, length: number): boolean
  /** ioctl BLKDISCARD on a block device. */
  blkDiscard(ctx: C, fd: number, offset: number, length: number): boolean
  /**
   * Hand what was started to the kernel (io_uring: one io_uring_enter) and deliver what finished
   * meanwhile; a no-op for threads.
   */
  submit(): void
  /** Release the engine's resources; nothing may be in flight. */
  close(): void
}

/** How to build an engine. */
export interface EngineOptions<C extends IoContext> {
  /**
   * `undefined`: sync for an image in memory; else io_uring, falling back to threads (calling
   * `onFallback`) where it is unavailable.
   */
  name: IoEngineName | undefined
  /** The image lives in memory (tmpfs, ramfs): reading or writing it never waits for storage. */
  inMemory: boolean
  /** Contexts by index; may be filled after construction, before the first operation. */
  contexts: readonly C[]
  sink: IoSink<C>
  /** Most operations in flight at once (sizes the io_uring completion queue). */
  maxInFlight: number
  /** Called with the reason when io_uring is unavailable and threads are used instead. */
  onFallback(reason: string): void
}

/**
 * Builds the engine asked for.
 *
 * @throws DiskError `EDISK_ENGINE` when io_uring was asked for explicitly and is unavailable
 */
export function createEngine<C extends IoContext>(opts: EngineOptions<C>): IoEngine<C> {
  if (opts.name === 'threads') return new ThreadsEngine(opts.sink)
  if (opts.name === 'sync' || (opts.name === undefined && opts.inMemory)) return new SyncEngine(opts.sink, opts.maxInFlight)
  try {
    return new UringEngine(opts.contexts, opts.sink, opts.maxInFlight)
  } catch (err) {
    const reason = uringUnavailable(err)
    if (opts.name === 'io_uring') throw new DiskError('EDISK_ENGINE', `io_uring is unavailable: ${reason}`, err)
    opts.onFallback(reason)
    return new ThreadsEngine(opts.sink)
  }
}

/** Why io_uring could not be set up, in words a user can act on. */
function uringUnavailable(err: unknown): string {
  const code = (err as { code?: string }).code ?? String(err)
  switch (code) {
    case 'ENOSYS':
      return 'ENOSYS (the kernel has no io_uring)'
    case 'EPERM':
      return 'EPERM (forbidden by a seccomp filter or by sysctl kernel.io_uring_disabled)'
    case 'EOPNOTSUPP':
      return 'EOPNOTSUPP (the kernel io_uring predates Linux 5.5)'
    default:
      return code
  }
}
