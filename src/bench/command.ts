/**
 * The `bench` subcommand: its options (yargs), their validation, and the run's report on stdout
 * (text, or one JSON object with --json). A usage mistake prints one line on stderr and exits
 * with code 2, as `serve` does; a failed run prints its reason and exits with 1; a run with I/O
 * errors prints its report and exits with 1.
 *
 * Owns the command-line face of src/bench/run.ts only; src/cli.ts mounts it with
 * `.command(benchCommand)`.
 */
import type { Argv, CommandModule } from 'yargs'
import { LOAD_PATTERNS, type LoadPattern } from '../frontend/index.js'
import { parseSize } from '../daemon/size.js'
import { formatBenchResult } from './format.js'
import { runBench, type BenchOptions } from './run.js'

/** Parsed `bench` arguments, before validation. */
export interface BenchArgs {
  socketPath?: string
  rw: string
  bs: string
  iodepth: number
  queues: number
  runtime: number
  ramp: number
  json: boolean
  serverPid?: number
  batch?: number
}

/** A bad option value. */
class BenchUsageError extends Error {}

function int(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new BenchUsageError(`--${name} must be an integer from ${min} to ${max} (got ${value})`)
  return value
}

/** Checks and converts the parsed arguments. Throws BenchUsageError. */
export function benchOptions(a: BenchArgs): BenchOptions {
  if (a.socketPath === undefined || a.socketPath === '') throw new BenchUsageError('--socket-path is required')
  if (!(LOAD_PATTERNS as readonly string[]).includes(a.rw)) throw new BenchUsageError(`--rw must be one of ${LOAD_PATTERNS.join(', ')}`)
  let bs: number
  try {
    bs = parseSize(a.bs)
  } catch (err) {
    throw new BenchUsageError(`--bs: ${(err as Error).message}`)
  }
  if (bs === 0 || bs % 512 !== 0) throw new BenchUsageError(`--bs must be a non-zero multiple of 512 (got ${a.bs})`)
  if (!(a.runtime > 0)) throw new BenchUsageError(`--runtime must be a positive number of seconds (got ${a.runtime})`)
  if (!(a.ramp >= 0)) throw new BenchUsageError(`--ramp must be a number of seconds, 0 or more (got ${a.ramp})`)
  return {
    socketPath: a.socketPath,
    rw: a.rw as LoadPattern,
    bs,
    iodepth: int('iodepth', a.iodepth, 1, 32768),
    queues: int('queues', a.queues, 1, 256),
    runtimeS: a.runtime,
    rampS: a.ramp,
    submitBatch: a.batch === undefined ? undefined : int('batch', a.batch, 1, 32768),
    serverPid: a.serverPid === undefined ? undefined : int('server-pid', a.serverPid, 1, 2 ** 31 - 1),
  }
}

/** Adds the `bench` options to a yargs instance. */
export function benchBuilder(y: Argv): Argv<BenchArgs> {
  return y
    .option('socket-path', { alias: 'socket', type: 'string', describe: 'the back-end\'s vhost-user socket (ours, qemu-storage-daemon, SPDK...)' })
    .option('rw', { type: 'string', default: 'randread', describe: LOAD_PATTERNS.join('|') })
    .option('bs', { type: 'string', default: '4K', describe: 'bytes per I/O (512, 4K, 1M...)' })
    .option('iodepth', { type: 'number', default: 32, describe: 'requests in flight per queue' })
    .option('queues', { type: 'number', default: 1, describe: 'queues to drive' })
    .option('runtime', { type: 'number', default: 5, describe: 'measured seconds' })
    .option('ramp', { type: 'number', default: 0.5, describe: 'warm-up seconds before measuring' })
    .option('batch', { type: 'number', describe: 'publish the avail index every N resubmissions (fio iodepth_batch_submit; default: once per completion wakeup)' })
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' })
    .option('server-pid', { type: 'number', describe: 'also report this process\'s CPU µs per I/O (/proc/PID/stat)' }) as unknown as Argv<BenchArgs>
}

/** Runs `bench` with parsed arguments; resolves with the exit code after printing the report. */
export async function runBenchCli(a: BenchArgs): Promise<number> {
  let opts: BenchOptions
  try {
    opts = benchOptions(a)
  } catch (err) {
    if (!(err instanceof BenchUsageError)) throw err
    process.stderr.write(`vhost-user-blk bench: ${err.message}\n`)
    return 2
  }
  try {
    const r = await runBench(opts)
    process.stdout.write(a.json ? `${JSON.stringify(r)}\n` : `${formatBenchResult(r)}\n`)
    return r.errors > 0 ? 1 : 0
  } catch (err) {
    const e = err as Error & { code?: string }
    const code = e.code !== undefined && !e.message.startsWith(e.code) ? `${e.code}: ` : ''
    process.stderr.write(`vhost-user-blk bench: ${code}${e.message}\n`)
    return 1
  }
}

/** `vhost-user-blk bench`, for `yargs.command(benchCommand)`. */
export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench',
  describe: 'drive a vhost-user-blk back-end with a load and report IOPS, latency and CPU per I/O',
  builder: benchBuilder,
  handler: async (args) => {
    process.exitCode = await runBenchCli(args)
  },
}
