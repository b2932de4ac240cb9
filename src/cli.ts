#!/usr/bin/env node
/**
 * The front door: parses the command line (yargs) into validated options and hands them to the
 * daemon. Follows QEMU's "backend program conventions" (docs/interop/vhost-user.rst):
 * --socket-path, --fd, --print-capabilities, --read-only; exits on SIGTERM; never daemonises.
 * Invalid options print one clear line and exit with code 2.
 */
import os from 'node:os'
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { createLogger, LOG_LEVELS, type LogLevel } from './daemon/log.js'
import { qemuArguments, startDaemon, type ServeOptions } from './daemon/serve.js'
import { parseSize } from './daemon/size.js'

const PROGRAM = 'vhost-user-blk'
const DEFAULT_SOCKET = './vhost-user-blk.sock'

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
  memory: string
  readOnly: boolean
  numQueues: number
  queueSize: number
  hwQueues?: number
  queueDepth: number
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
  let memoryBytes: number
  try {
    memoryBytes = parseSize(a.memory)
  } catch (err) {
    throw new UsageError(`--memory: ${(err as Error).message}`)
  }
  if (memoryBytes === 0 || memoryBytes % logicalBlockSize !== 0) {
    throw new UsageError(`--memory must be a non-zero multiple of the logical block size ${logicalBlockSize} (got ${a.memory})`)
  }
  const numQueues = intInRange('num-queues', a.numQueues, 1, 256)
  if (!isPowerOfTwo(a.queueSize) || a.queueSize > 32768) throw new UsageError(`--queue-size must be a power of 2 up to 32768 (got ${a.queueSize})`)
  if (Buffer.byteLength(a.serial) > 20 || !/^[\x20-\x7e]*$/.test(a.serial)) throw new UsageError('--serial must be at most 20 printable ASCII characters')
  if (!(LOG_LEVELS as readonly string[]).includes(a.logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`)
  return {
    socketPath: a.fd === undefined ? (a.socketPath ?? DEFAULT_SOCKET) : undefined,
    fd: a.fd,
    memoryBytes,
    readOnly: a.readOnly,
    numQueues,
    queueSize: a.queueSize,
    hwQueues: intInRange('hw-queues', a.hwQueues ?? numQueues, 1, 256),
    queueDepth: intInRange('queue-depth', a.queueDepth, 1, 65535),
    logicalBlockSize,
    serial: a.serial,
  }
}

/** `--print-capabilities`: the JSON QEMU's vhost-user.json schema describes for block backends. */
function printCapabilities(): void {
  process.stdout.write(`${JSON.stringify({ type: 'block', features: ['read-only'] })}\n`)
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
  let daemon: ReturnType<typeof startDaemon>
  try {
    daemon = startDaemon(opts, log)
  } catch (err) {
    const e = err as Error & { code?: string }
    log.fatal({ code: e.code }, e.message)
    process.stderr.write(`${PROGRAM}: ${e.message}\n`)
    process.exit(1)
  }
  process.stdout.write(`Attach a QEMU guest with:\n  ${qemuArguments(opts)}\n`)
  let stopping = false
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting for requests in flight')
      process.exit(1)
    }
    stopping = true
    log.info({ signal }, 'shutting down: completing requests in flight')
    daemon.close().then(
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
          .option('memory', { type: 'string', default: '1G', describe: 'serve a sparse memory disk of this size (512, 4K, 1M, 1G, 1T)' })
          .option('read-only', { type: 'boolean', default: false, describe: 'refuse writes, advertise VIRTIO_BLK_F_RO' })
          .option('num-queues', { type: 'number', default: 16, describe: 'virtqueues offered (QEMU num-queues may be up to this)' })
          .option('queue-size', { type: 'number', default: 256, describe: 'ring size for the printed QEMU arguments' })
          .option('hw-queues', { type: 'number', describe: 'hardware queues (default: one per virtqueue; more virtqueues share them modulo)' })
          .option('queue-depth', { type: 'number', default: 256, describe: 'tags (requests in flight) per hardware queue' })
          .option('logical-block-size', { type: 'number', default: 512, describe: '512 or 4096' })
          .option('serial', { type: 'string', default: 'vhost-user-blk', describe: 'disk serial (GET_ID), up to 20 characters' })
          .option('log-level', { type: 'string', default: 'info', describe: LOG_LEVELS.join('|') }),
      (args) => serve(args as unknown as ServeArgs),
    )
    .strict()
    .help()
    .version()
    .fail((msg, err) => {
      if (err !== undefined && err !== null) throw err
      usageFail(msg)
    })
}

parser(hideBin(process.argv)).parse()
