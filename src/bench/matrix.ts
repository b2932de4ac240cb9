/**
 * The benchmark matrix behind `npm run bench`: starts every target (targets.ts), runs each
 * workload against each of them several times, each run in a generator process of its own
 * (main.js: the `bench` command with --server-pid), and reduces the runs to medians and to the
 * ratios ours/qemu-storage-daemon. Runs are interleaved (repetition, then workload, then target,
 * the target order rotating per repetition) so that a noisy spell on a shared machine hits every
 * target alike instead of one.
 *
 * Owns: the workload list, the run schedule, prefilling the memory disk, medians and ratios, the
 * report record and its table. Does not own: the servers' command lines (targets.ts), the load
 * (frontend/load.ts), a single run's figures (run.ts).
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { VhostUserBlkClient, loadMemoryBytes, runLoad, type LoadPattern } from '../frontend/index.js'
import { fixed, kilo, table } from './format.js'
import type { BenchResult } from './run.js'
import { median } from './stats.js'
import { machineInfo, type MachineInfo } from './system.js'
import { TARGETS, TargetSkipped, qsdVersion, startTarget, type RunningTarget, type TargetName, type TargetSpec } from './targets.js'

/** One row of the matrix. */
export interface Workload {
  /** Stable id, e.g. '4k-randread-qd32-q2' (for --rows and the JSON). */
  id: string
  /** Table label, e.g. '4k randread QD32'. */
  label: string
  rw: LoadPattern
  bs: number
  iodepth: number
  queues: number
}

/** The issue's rows: 4k randread QD1 and QD32, 4k randwrite QD32, 1M read QD8; each with 1 and 2 queues. */
export const WORKLOADS: readonly Workload[] = [
  { label: '4k randread QD1', rw: 'randread' as const, bs: 4096, iodepth: 1 },
  { label: '4k randread QD32', rw: 'randread' as const, bs: 4096, iodepth: 32 },
  { label: '4k randwrite QD32', rw: 'randwrite' as const, bs: 4096, iodepth: 32 },
  { label: '1M read QD8', rw: 'read' as const, bs: 1 << 20, iodepth: 8 },
].flatMap((w) => [1, 2].map((queues) => ({
  ...w,
  queues,
  id: `${w.label.toLowerCase().replace(/ /g, '-')}-q${queues}`,
})))

/** What to run. */
export interface MatrixOptions {
  /** Measured seconds per run. */
  runtimeS: number
  /** Warm-up seconds per run. */
  rampS: number
  /** Runs per cell (the median is reported). */
  runs: number
  /** Disk size in bytes. */
  sizeBytes: number
  targets: readonly TargetName[]
  workloads: readonly Workload[]
  /** Our server's entry point. */
  serverCli: string
  /** The generator's entry point (dist/bench/main.js). */
  generator: string
  /** Where backing files go (tmpfs). */
  fileDir: string
  /** Progress lines (stderr). */
  log: (line: string) => void
}

/** Medians over a cell's successful runs. */
export interface CellMedian {
  iops: number
  mibps: number
  p50Us: number
  p99Us: number
  p999Us: number
  serverCpuUsPerIo: number | null
  serverCpuCores: number | null
  generatorCpuUsPerIo: number
  generatorCpuCores: number
  /** I/O errors summed over the runs. */
  errors: number
}

/** One workload on one target. */
export interface Cell {
  workload: string
  target: TargetName
  runs: BenchResult[]
  /** Runs that produced no result, with the reason. */
  failures: string[]
  median: CellMedian | null
  /** This target / its qemu-storage-daemon counterpart, medians against medians. */
  vs: { target: TargetName; iops: number | null; serverCpuUsPerIo: number | null; p50Us: number | null } | null
}

/** The whole record written to bench/results/<timestamp>.json. */
export interface MatrixReport {
  startedAt: string
  finishedAt: string
  machine: MachineInfo & { loadAvgStart: number[]; loadAvgEnd: number[] }
  qemuStorageDaemon: string | null
  config: {
    runtimeS: number; rampS: number; runs: number; sizeBytes: number; numQueues: number; serverCli: string
    /** How the generator drives the rings (its defaults). */
    generator: string
  }
  targets: { name: TargetName; status: 'ok' | 'skipped'; reason?: string; command?: string[]; notes?: string }[]
  workloads: Workload[]
  cells: Cell[]
}

const NUM_QUEUES = 2
const PREFILL_BS = 1 << 20

/** Runs the matrix; servers are stopped and temp files removed whatever happens. */
export async function runMatrix(opts: MatrixOptions): Promise<MatrixReport> {
  const startedAt = new Date().toISOString()
  const loadAvgStart = os.loadavg()
  const socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-bench-'))
  const fileDir = fs.mkdtempSync(path.join(opts.fileDir, 'vub-bench-'))
  const env = { socketDir, fileDir, sizeBytes: opts.sizeBytes, numQueues: NUM_QUEUES, serverCli: opts.serverCli }
  const running = new Map<TargetName, RunningTarget>()
  const targetRecords: MatrixReport['targets'] = []
  const cells = new Map<string, Cell>()
  try {
    for (const spec of TARGETS.filter((t) => opts.targets.includes(t.name))) {
      try {
        const t = await startTarget(spec, env)
        if (spec.backing === 'memory') await prefill(t.socketPath, opts.sizeBytes)
        running.set(spec.name, t)
        targetRecords.push({ name: spec.name, status: 'ok', command: t.command, notes: t.notes })
        opts.log(`started ${spec.name} (pid ${t.pid})${t.notes !== '' ? `: ${t.notes}` : ''}`)
      } catch (err) {
        const reason = err instanceof TargetSkipped ? err.message : `${spec.name}: ${(err as Error).message}`
        targetRecords.push({ name: spec.name, status: 'skipped', reason })
        opts.log(`skipping ${spec.name}: ${reason}`)
      }
    }
    const live = [...running.values()]
    for (const w of opts.workloads) for (const t of live) cells.set(key(w.id, t.spec.name), { workload: w.id, target: t.spec.name, runs: [], failures: [], median: null, vs: null })
    const total = opts.runs * opts.workloads.length * live.length
    let done = 0
    for (let rep = 0; rep < opts.runs; rep++) {
      const order = live.map((_, i) => live[(i + rep) % live.length])
      for (const w of opts.workloads) {
        for (const t of order) {
          const cell = cells.get(key(w.id, t.spec.name)) as Cell
          const r = await runGenerator(opts, t, w)
          done++
          if (typeof r === 'string') {
            cell.failures.push(r)
            opts.log(`[${done}/${total}] ${w.id} ${t.spec.name}: failed: ${r}`)
          } else {
            cell.runs.push(r)
            opts.log(`[${done}/${total}] ${w.id} ${t.spec.name}: ${kilo(r.iops)} IOPS, p50 ${fixed(r.latencyUs.p50, 1)} µs, server ${fixed(r.serverCpuUsPerIo, 2)} µs/IO`)
          }
        }
      }
    }
  } finally {
    await Promise.all([...running.values()].map((t) => t.stop()))
    fs.rmSync(socketDir, { recursive: true, force: true })
    fs.rmSync(fileDir, { recursive: true, force: true })
  }
  for (const cell of cells.values()) cell.median = medianOf(cell.runs)
  for (const cell of cells.values()) {
    const spec = TARGETS.find((t) => t.name === cell.target) as TargetSpec
    const ref = spec.comparedWith === null ? undefined : cells.get(key(cell.workload, spec.comparedWith))
    if (ref === undefined || spec.comparedWith === null) continue
    const a = cell.median
    const b = ref.median
    cell.vs = {
      target: spec.comparedWith,
      iops: a !== null && b !== null ? a.iops / b.iops : null,
      serverCpuUsPerIo: a?.serverCpuUsPerIo != null && b?.serverCpuUsPerIo != null ? a.serverCpuUsPerIo / b.serverCpuUsPerIo : null,
      p50Us: a !== null && b !== null ? a.p50Us / b.p50Us : null,
    }
  }
  return {
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { ...machineInfo(), loadAvgStart, loadAvgEnd: os.loadavg() },
    qemuStorageDaemon: qsdVersion(),
    config: {
      runtimeS: opts.runtimeS, rampS: opts.rampS, runs: opts.runs, sizeBytes: opts.sizeBytes, numQueues: NUM_QUEUES, serverCli: opts.serverCli,
      generator: 'own process per run; ring size 256; indirect descriptors when negotiated; one avail publish and at most one kick per completion wakeup; EVENT_IDX',
    },
    targets: targetRecords,
    workloads: [...opts.workloads],
    cells: [...cells.values()],
  }
}

/** The table `npm run bench` prints: one line per workload and target, ratios on our lines. */
export function formatMatrix(report: MatrixReport): string {
  const header = ['workload', 'q', 'target', 'IOPS', 'MiB/s', 'p50 µs', 'p99 µs', 'p99.9 µs', 'srv µs/IO', 'srv cores', 'gen µs/IO', 'vs', 'IOPS ×', 'CPU/IO ×', 'p50 ×']
  const rows: string[][] = []
  for (const w of report.workloads) {
    for (const cell of report.cells.filter((c) => c.workload === w.id)) {
      const m = cell.median
      const v = cell.vs
      rows.push([
        w.label, String(w.queues), cell.target,
        m === null ? 'failed' : kilo(m.iops), fixed(m?.mibps ?? null, 0), fixed(m?.p50Us ?? null, 1), fixed(m?.p99Us ?? null, 1),
        fixed(m?.p999Us ?? null, 1), fixed(m?.serverCpuUsPerIo ?? null, 2), fixed(m?.serverCpuCores ?? null, 2),
        fixed(m?.generatorCpuUsPerIo ?? null, 2), v?.target ?? '', fixed(v?.iops ?? null, 2), fixed(v?.serverCpuUsPerIo ?? null, 2),
        fixed(v?.p50Us ?? null, 2),
      ])
    }
  }
  const mc = report.machine
  const lines = [
    `${report.startedAt}  ${mc.cpuModel}, ${mc.cores} cores, ${mc.kernel}, node ${mc.node}; ${report.qemuStorageDaemon ?? 'qemu-storage-daemon not installed'}`,
    `medians of ${report.config.runs} runs of ${report.config.runtimeS} s (after ${report.config.rampS} s warm-up); load average at start ${mc.loadAvgStart.map((x) => x.toFixed(2)).join(' ')}`,
    '',
    table(header, rows, 3),
  ]
  for (const t of report.targets) if (t.status === 'skipped') lines.push(`skipped ${t.name}: ${t.reason}`)
  for (const c of report.cells) if (c.failures.length > 0) lines.push(`${c.workload} ${c.target}: ${c.failures.length} failed run(s): ${c.failures[0]}`)
  const errs = report.cells.filter((c) => (c.median?.errors ?? 0) > 0)
  for (const c of errs) lines.push(`${c.workload} ${c.target}: ${c.median?.errors} I/O errors`)
  return lines.join('\n')
}

function key(workload: string, target: TargetName): string {
  return `${workload}\0${target}`
}

/** Writes the whole memory disk once (1M sequential writes), so reads copy data instead of zero-filling holes. */
async function prefill(socketPath: string, sizeBytes: number): Promise<void> {
  const opts = { bs: PREFILL_BS, iodepth: 8, queues: 1 }
  const client = await VhostUserBlkClient.connect({ socketPath, numQueues: 1, memorySize: loadMemoryBytes(opts) })
  try {
    await runLoad(client, { ...opts, rw: 'write', runtimeMs: 600_000, ioLimit: Math.ceil(sizeBytes / PREFILL_BS) })
  } finally {
    await client.close()
  }
}

/** One run in a generator process; the result, or why there is none. */
function runGenerator(opts: MatrixOptions, t: RunningTarget, w: Workload): Promise<BenchResult | string> {
  const args = [
    opts.generator, '--socket-path', t.socketPath, '--rw', w.rw, '--bs', String(w.bs), '--iodepth', String(w.iodepth),
    '--queues', String(w.queues), '--runtime', String(opts.runtimeS), '--ramp', String(opts.rampS), '--server-pid', String(t.pid), '--json',
  ]
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    proc.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
    const timer = setTimeout(() => proc.kill('SIGKILL'), (opts.runtimeS + opts.rampS + 30) * 1000)
    proc.once('exit', (code, signal) => {
      clearTimeout(timer)
      const line = out.trim().split('\n').pop() ?? ''
      try {
        resolve(JSON.parse(line) as BenchResult)
      } catch {
        resolve(`exit ${code ?? signal}: ${err.trim().split('\n').pop() ?? 'no output'}`)
      }
    })
  })
}

function medianOf(runs: readonly BenchResult[]): CellMedian | null {
  if (runs.length === 0) return null
  const m = (f: (r: BenchResult) => number): number => median(runs.map(f))
  const srv = runs.every((r) => r.serverCpuUsPerIo !== null)
  return {
    iops: m((r) => r.iops),
    mibps: m((r) => r.mibps),
    p50Us: m((r) => r.latencyUs.p50),
    p99Us: m((r) => r.latencyUs.p99),
    p999Us: m((r) => r.latencyUs.p999),
    serverCpuUsPerIo: srv ? m((r) => r.serverCpuUsPerIo as number) : null,
    serverCpuCores: srv ? m((r) => r.serverCpuCores as number) : null,
    generatorCpuUsPerIo: m((r) => r.generatorCpuUsPerIo),
    generatorCpuCores: m((r) => r.generatorCpuCores),
    errors: runs.reduce((n, r) => n + r.errors, 0),
  }
}
