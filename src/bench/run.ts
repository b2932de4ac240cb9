/**
 * One benchmark run, the work behind `vhost-user-blk bench`: connects the userspace front-end to
 * a vhost-user-blk back-end, drives it with the load generator (src/frontend/load.ts) and turns
 * what it counted into the figures users compare back-ends by: IOPS, MiB/s, latency percentiles,
 * errors, and CPU microseconds per I/O of the server (with its pid) and of the generator itself.
 *
 * Owns the run's options, the result record and CPU sampling around the measured window. Does
 * not own the load loop (frontend) or presentation (format.ts).
 */
import { VhostUserBlkClient, loadMemoryBytes, runLoad, type LoadPattern } from '../frontend/index.js'
import { processCpuUs } from './system.js'

/** What to run against which back-end. */
export interface BenchOptions {
  /** The back-end's vhost-user socket. */
  socketPath: string
  rw: LoadPattern
  /** Bytes per I/O. */
  bs: number
  /** Requests in flight per queue. */
  iodepth: number
  /** Queues to drive (the back-end must offer them). */
  queues: number
  /** Measured seconds. */
  runtimeS: number
  /** Warm-up seconds before the window (JIT, caches); not counted. Default 0.5. */
  rampS?: number
  /** The server's pid: report its CPU per I/O (utime+stime over the window). */
  serverPid?: number
  /** Ring size of each queue (default 256). */
  queueSize?: number
  /** Resubmissions per avail publish within a wakeup (LoadOptions.submitBatch; default: one publish per wakeup). */
  submitBatch?: number
}

/** Latency figures in µs. */
export interface LatencySummary {
  mean: number
  p50: number
  p99: number
  p999: number
  max: number
}

/** The outcome of one run (the `--json` output). */
export interface BenchResult {
  rw: LoadPattern
  bs: number
  iodepth: number
  queues: number
  /** Length of the measured window, s. */
  seconds: number
  /** I/Os completed in the window. */
  ios: number
  /** Completions with a status other than OK. */
  errors: number
  iops: number
  /** MiB/s (2^20 bytes). */
  mibps: number
  latencyUs: LatencySummary
  /** Server CPU µs per I/O, or null without a server pid. */
  serverCpuUsPerIo: number | null
  /** Server CPU time / wall time in the window (1 = one core busy), or null. */
  serverCpuCores: number | null
  /** The generator's own CPU µs per I/O (this process, user + system). */
  generatorCpuUsPerIo: number
  /** The generator's CPU time / wall time in the window. */
  generatorCpuCores: number
  /** Kick eventfd writes per I/O (notification batching seen from the driver side). */
  kicksPerIo: number
  /** Call eventfd wakeups per I/O. */
  wakeupsPerIo: number
}

/** Thrown for a failed run (server gone, bad pid); `code` is stable. */
export class BenchError extends Error {
  override readonly name = 'BenchError'

  constructor(readonly code: 'EBENCH_SERVER_PID' | 'EBENCH_NO_IO', message: string, options?: { cause?: unknown }) {
    super(message, options)
    Error.captureStackTrace?.(this, BenchError)
  }
}

/** Connects, runs the load, disconnects. Rejects with BenchError or VhostUserClientError. */
export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const pid = opts.serverPid
  if (pid !== undefined) sampleServer(pid)
  const queueSize = opts.queueSize ?? 256
  const client = await VhostUserBlkClient.connect({
    socketPath: opts.socketPath,
    numQueues: opts.queues,
    queueSize,
    memorySize: loadMemoryBytes(opts, queueSize),
  })
  let serverStart = 0
  let serverUs: number | null = null
  try {
    const r = await runLoad(client, {
      rw: opts.rw,
      bs: opts.bs,
      iodepth: opts.iodepth,
      queues: opts.queues,
      runtimeMs: opts.runtimeS * 1000,
      rampMs: (opts.rampS ?? 0.5) * 1000,
      submitBatch: opts.submitBatch,
      onWindowStart: () => {
        if (pid !== undefined) serverStart = sampleServer(pid)
      },
      onWindowEnd: () => {
        if (pid !== undefined) serverUs = sampleServer(pid) - serverStart
      },
    })
    if (r.ios === 0) throw new BenchError('EBENCH_NO_IO', 'no I/O completed in the measured window')
    const seconds = r.elapsedMs / 1000
    const lat = r.latency
    const us = (ns: number): number => ns / 1000
    const genUs = r.cpuUserUs + r.cpuSystemUs
    return {
      rw: opts.rw,
      bs: opts.bs,
      iodepth: opts.iodepth,
      queues: opts.queues,
      seconds,
      ios: r.ios,
      errors: r.errors,
      iops: r.ios / seconds,
      mibps: r.bytes / 2 ** 20 / seconds,
      latencyUs: { mean: us(lat.mean()), p50: us(lat.percentile(50)), p99: us(lat.percentile(99)), p999: us(lat.percentile(99.9)), max: us(lat.max()) },
      serverCpuUsPerIo: serverUs === null ? null : serverUs / r.ios,
      serverCpuCores: serverUs === null ? null : serverUs / (seconds * 1e6),
      generatorCpuUsPerIo: genUs / r.ios,
      generatorCpuCores: genUs / (seconds * 1e6),
      kicksPerIo: r.kicks / r.ios,
      wakeupsPerIo: r.wakeups / r.ios,
    }
  } finally {
    await client.close()
  }
}

function sampleServer(pid: number): number {
  try {
    return processCpuUs(pid)
  } catch (err) {
    throw new BenchError('EBENCH_SERVER_PID', `cannot read the CPU time of server pid ${pid}: ${(err as Error).message}`, { cause: err })
  }
}
