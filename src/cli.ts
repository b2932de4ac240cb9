#!/usr/bin/env node
/**
 * The front door: parses the command line (yargs) into validated options and hands them to the
 * daemon. Follows QEMU's "backend program conventions" (docs/interop/vhost-user.rst):
 * --socket-path, --fd, --print-capabilities, --read-only, and --blk-file for block backends;
 * exits on SIGTERM; never daemonises.
 * Invalid options print one clear line and exit with code 2.
 */
import os from 'node:os'
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { createLogger, LOG_LEVELS, type LogLevel } from './daemon/log.js'
import { benchCommand } from './bench/command.js'
import { IO_ENGINES, qemuArguments, startDaemon, type FileDiskSpec, type MemoryDiskSpec, type NullDiskSpec, type ServeOptions } from './daemon/serve.js'
import { MAX_IO_THREADS } from './daemon/io-threads.js'
import { parseSize } from './daemon/size.js'

const PROGRAM = 'vhost-user-blk'
const DEFAULT_SOCKET = './vhost-user-blk.sock'
const DEFAULT_MEMORY = '1G'
const CACHE_MODES = ['writeback', 'writethrough'] as const
/** Adaptive polling window: QEMU's default poll-max-ns is 32 µs too. */
const DEFAULT_POLL_US = 32
const MAX_POLL_US = 10_000

/** A bad option: reported as one line, exit code 2. */
class UsageError extends Error {}

function usageFail(message: string): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`)
  process.exit(2)
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0
}

function intInRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got ${value})`)
  return value
}

interface ServeArgs {
  socketPath?: string
  fd?: number
  memory?: string
  null?: string
  file?: string
  size?: string
  ioEngine?: string
  direct: boolean
  cache: string
  readOnly: boolean
  numQueues: number
  queueSize: number
  hwQueues?: number
  queueDepth: number
  ioThreads: number
  pollUs: number
  logicalBlockSize: number
  serial: string
  logLevel: string
  printCapabilities: boolean
}

/** Checks and converts the parsed arguments. Throws UsageError. */
function serveOptions(a: ServeArgs): ServeOptions {
  if (a.socketPath !== undefined && a.fd !== undefined) throw new UsageError('--socket-path and --fd are mutually exclusive')
  if (a.fd !== undefined) intInRange('fd', a.fd, 0, 2 ** 31 - 1)
  const logicalBlockSize = a.logicalBlockSize
  if (logicalBlockSize !== 512 && logicalBlockSize !== 4096) throw new UsageError(`--logical-block-size must be 512 or 4096 (got ${logicalBlockSize})`)
  const disk = diskSpec(a, logicalBlockSize)
  if (!(CACHE_MODES as readonly string[]).includes(a.cache)) throw new UsageError(`--cache must be one of ${CACHE_MODES.join(', ')} (got ${a.cache})`)
  const numQueues = intInRange('num-queues', a.numQueues, 1, 256)
  if (!isPowerOfTwo(a.queueSize) || a.queueSize > 32768) throw new UsageError(`--queue-size must be a power of 2 up to 32768 (got ${a.queueSize})`)
  if (Buffer.byteLength(a.serial) > 20 || !/^[\x20-\x7e]*$/.test(a.serial)) throw new UsageError('--serial must be at most 20 printable ASCII characters')
  if (!(LOG_LEVELS as readonly string[]).includes(a.logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`)
  return {
    socketPath: a.fd === undefined ? (a.socketPath ?? DEFAULT_SOCKET) : undefined,
    fd: a.fd,
    disk,
    writeback: a.cache === 'writeback',
    readOnly: a.readOnly,
    numQueues,
    queueSize: a.queueSize,
    hwQueues: intInRange('hw-queues', a.hwQueues ?? numQueues, 1, 256),
    ioThreads: intInRange('io-threads', a.ioThreads, 0, MAX_IO_THREADS),
    pollUs: intInRange('poll-us', a.pollUs, 0, MAX_POLL_US),
    queueDepth: intInRange('queue-depth', a.queueDepth, 1, 65535),
    logicalBlockSize,
    serial: a.serial,
  }
}

/** A size option: a non-zero multiple of the logical block size. */
function blockMultiple(name: string, text: string, logicalBlockSize: number): number {
  let bytes: number
  try {
    bytes = parseSize(text)
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`)
  }
  if (bytes === 0 || bytes % logicalBlockSize !== 0) {
    throw new UsageError(`--${name} must be a non-zero multiple of the logical block size ${logicalBlockSize} (got ${text})`)
  }
  return bytes
}

/** The disk to serve: `--memory` (the default) or `--file` with its options. */
function diskSpec(a: ServeArgs, logicalBlockSize: number): MemoryDiskSpec | NullDiskSpec | FileDiskSpec {
  if (a.null !== undefined) {
    if (a.memory !== undefined || a.file !== undefined) throw new UsageError('--null, --memory and --file are mutually exclusive')
    return { kind: 'null', bytes: blockMultiple('null', a.null, logicalBlockSize) }
  }
  if (a.file === undefined) {
    for (const [name, given] of [['size', a.size !== undefined], ['io-engine', a.ioEngine !== undefined], ['direct', a.direct]] as const) {
      if (given) throw new UsageError(`--${name} needs --file`)
    }
    return { kind: 'memory', bytes: blockMultiple('memory', a.memory ?? DEFAULT_MEMORY, logicalBlockSize) }
  }
  if (a.memory !== undefined) throw new UsageError('--memory and --file are mutually exclusive')
  if (a.file === '') throw new UsageError('--file needs a path')
  if (a.ioEngine !== undefined && !(IO_ENGINES as readonly string[]).includes(a.ioEngine)) {
    throw new UsageError(`--io-engine must be one of ${IO_ENGINES.join(', ')} (got ${a.ioEngine})`)
  }
  if (a.size !== undefined && a.readOnly) throw new UsageError('--size cannot create or grow a --read-only image')
  return {
    kind: 'file',
    path: a.file,
    sizeBytes: a.size === undefined ? undefined : blockMultiple('size', a.size, logicalBlockSize),
    direct: a.direct,
    ioEngine: a.ioEngine as FileDiskSpec['ioEngine'],
  }
}

/** `--print-capabilities`: the JSON QEMU's vhost-user.json schema describes for block backends. */
function printCapabilities(): void {
  process.stdout.write(`${JSON.stringify({ type: 'block', features: ['read-only', 'blk-file'] })}\n`)
}

function serve(a: ServeArgs): void {
  if (a.printCapabilities) return printCapabilities()
  let opts: ServeOptions
  try {
    opts = serveOptions(a)
  } catch (err) {
    if (err instanceof UsageError) usageFail(err.message)
    throw err
  }
  if (os.endianness() !== 'LE') usageFail('this backend supports little-endian hosts only')
  const log = createLogger(a.logLevel as LogLevel)
  // Handlers go in before the server exists: a SIGTERM sent as soon as 'serving' is logged must
  // not meet the default action (instant death). They run from the event loop, so only after
  // startDaemon (synchronous) has returned and `daemon` is set.
  let daemon: ReturnType<typeof startDaemon> | undefined
  let stopping = false
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting for requests in flight')
      process.exit(1)
    }
    stopping = true
    log.info({ signal }, 'shutting down: completing requests in flight')
    daemon!.close().then(
      () => {
        log.info('stopped')
        process.exit(0)
      },
      (err) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  try {
    daemon = startDaemon(opts, log)
  } catch (err) {
    const e = err as Error & { code?: string }
    log.fatal({ code: e.code }, e.message)
    process.stderr.write(`${PROGRAM}: ${e.message}\n`)
    process.exit(1)
  }
  process.stdout.write(`Attach a QEMU guest with:\n  ${qemuArguments(opts)}\n`)
}

/** Builds the parser; exported for tests. */
export function parser(argv: string[]) {
  return yargs(argv)
    .scriptName(PROGRAM)
    .command(
      ['serve', '$0'],
      'serve a virtio-blk disk to QEMU over a vhost-user socket (default: a 1 GiB memory disk on ./vhost-user-blk.sock)',
      (y) =>
        y
          .option('socket-path', { alias: 'socket', type: 'string', describe: `Unix socket to listen on (default ${DEFAULT_SOCKET})` })
          .option('fd', { type: 'number', describe: 'serve on an inherited listening socket (as libvirt passes one)' })
          .option('print-capabilities', { type: 'boolean', default: false, describe: 'print the backend capabilities as JSON and exit' })
          .option('memory', { type: 'string', describe: `serve a sparse memory disk of this size (512, 4K, 1M, 1G, 1T; default ${DEFAULT_MEMORY})` })
          .option('null', { type: 'string', describe: 'serve a null disk of this size: requests complete at once, nothing is stored (like qemu null-co); for benchmarks' })
          .option('file', { alias: 'blk-file', type: 'string', describe: 'serve a raw image file or block device' })
          .option('size', { type: 'string', describe: 'with --file: create a missing image, or grow a shorter one, to this size (sparse)' })
          .option('io-engine', { type: 'string', describe: `with --file: ${IO_ENGINES.join('|')} (default: sync for an image on tmpfs, else io_uring, else threads)` })
          .option('direct', { type: 'boolean', default: false, describe: 'with --file: open with O_DIRECT, bypassing the host page cache' })
          .option('cache', { type: 'string', default: 'writeback', describe: `initial write cache mode, ${CACHE_MODES.join('|')}; the guest may change it` })
          .option('read-only', { type: 'boolean', default: false, describe: 'refuse writes, advertise VIRTIO_BLK_F_RO' })
          .option('num-queues', { type: 'number', default: 16, describe: 'virtqueues offered (QEMU num-queues may be up to this)' })
          .option('queue-size', { type: 'number', default: 256, describe: 'ring size for the printed QEMU arguments' })
          .option('hw-queues', { type: 'number', describe: 'hardware queues (default: one per virtqueue; more virtqueues share them modulo)' })
          .option('queue-depth', { type: 'number', default: 256, describe: 'tags (requests in flight) per hardware queue' })
          .option('io-threads', { type: 'number', default: 0, describe: `serve the hardware queues on N I/O threads, queue h on thread h mod N (0..${MAX_IO_THREADS}; 0: on the main thread)` })
          .option('poll-us', { type: 'number', default: DEFAULT_POLL_US, describe: `longest adaptive polling window of a thread's rings after a batch, in µs (0..${MAX_POLL_US}; 0: always sleep on the kick eventfd)` })
          .option('logical-block-size', { type: 'number', default: 512, describe: '512 or 4096' })
          .option('serial', { type: 'string', default: 'vhost-user-blk', describe: 'disk serial (GET_ID), up to 20 characters' })
          .option('log-level', { type: 'string', default: 'info', describe: LOG_LEVELS.join('|') }),
      (args) => serve(args as unknown as ServeArgs),
    )
    .command(benchCommand)
    .strict()
    .help()
    .version()
    .fail((msg, err) => {
      if (err !== undefined && err !== null) throw err
      usageFail(msg)
    })
}

parser(hideBin(process.argv)).parse()
