/**
 * The guest-visible part of `npm run bench`: fio inside a QEMU guest (TCG, the test guest of
 * vm/) against each back-end, 4k random reads at queue depth 32, medians of several boots. Under
 * TCG the guest is the bottleneck, so this does not show a back-end's speed so much as whether
 * its notification handling costs the guest anything.
 *
 * Owns the run schedule (targets interleaved per repetition), reading fio's IOPS from the guest's
 * `VUB-RESULT fio_iops=N` line (vm/scenarios/fio-bench.sh), medians and ratios, and the table.
 * Does not own the back-ends (targets.ts) or the guest (vm/boot.sh).
 */
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fixed, kilo, table } from './format.js'
import { median } from './stats.js'
import { TARGETS, TargetSkipped, startTarget, type RunningTarget, type TargetName } from './targets.js'

/** The targets a guest boots against: ours on memory and on the tmpfs file, and qsd on that file. */
export const GUEST_TARGETS: readonly TargetName[] = ['ours-memory', 'ours-file', 'qsd-file']

/** What to run. */
export interface GuestBenchOptions {
  /** Boots per target (the median is reported). */
  runs: number
  /** fio's measured seconds per boot (after its 2 s ramp). */
  runtimeS: number
  /** Disk size in bytes. */
  sizeBytes: number
  /** The project root (vm/boot.sh lives there). */
  root: string
  /** Our server's entry point. */
  serverCli: string
  /** Where backing files go (tmpfs). */
  fileDir: string
  log: (line: string) => void
}

/** One target's boots. */
export interface GuestCell {
  target: TargetName
  /** fio's read IOPS of each successful boot. */
  iops: number[]
  failures: string[]
  median: number | null
  /** Median / the qemu-storage-daemon file target's median. */
  vsQsd: number | null
}

/** The guest comparison's record (part of the JSON report). */
export interface GuestReport {
  workload: string
  runs: number
  runtimeS: number
  /** Set when the comparison could not run at all. */
  skipped?: string
  cells: GuestCell[]
}

const WORKLOAD = { rw: 'randread', bs: '4k', iodepth: 32 }
const QEMU = 'qemu-system-x86_64'

/** Runs the comparison; servers are stopped whatever happens. */
export async function runGuestBench(opts: GuestBenchOptions): Promise<GuestReport> {
  const report: GuestReport = {
    workload: `fio ${WORKLOAD.rw} bs=${WORKLOAD.bs} iodepth=${WORKLOAD.iodepth}, libaio O_DIRECT, 1 job, 1 vCPU (TCG)`,
    runs: opts.runs,
    runtimeS: opts.runtimeS,
    cells: [],
  }
  if (spawnSync('sh', ['-c', `command -v ${QEMU}`]).status !== 0) {
    report.skipped = `${QEMU} is not installed`
    return report
  }
  const socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-guest-bench-'))
  const fileDir = fs.mkdtempSync(path.join(opts.fileDir, 'vub-guest-bench-'))
  const env = { socketDir, fileDir, sizeBytes: opts.sizeBytes, numQueues: 1, serverCli: opts.serverCli }
  const running: RunningTarget[] = []
  try {
    for (const name of GUEST_TARGETS) {
      const spec = TARGETS.find((t) => t.name === name)!
      try {
        running.push(await startTarget(spec, env))
      } catch (err) {
        const reason = err instanceof TargetSkipped ? err.message : (err as Error).message
        report.cells.push({ target: name, iops: [], failures: [reason], median: null, vsQsd: null })
        opts.log(`guest bench: skipping ${name}: ${reason}`)
      }
    }
    const cells = running.map((t) => ({ target: t.spec.name, iops: [] as number[], failures: [] as string[], median: null, vsQsd: null }))
    report.cells.push(...cells)
    for (let rep = 0; rep < opts.runs; rep++) {
      for (let i = 0; i < running.length; i++) {
        const t = running[(i + rep) % running.length]
        const cell = cells.find((c) => c.target === t.spec.name)!
        const r = await bootFio(opts, t.socketPath)
        if (typeof r === 'string') cell.failures.push(r)
        else cell.iops.push(r)
        opts.log(`guest bench [${rep + 1}/${opts.runs}] ${t.spec.name}: ${typeof r === 'string' ? `failed: ${r}` : `${kilo(r)} IOPS`}`)
      }
    }
  } finally {
    await Promise.all(running.map((t) => t.stop()))
    fs.rmSync(socketDir, { recursive: true, force: true })
    fs.rmSync(fileDir, { recursive: true, force: true })
  }
  for (const c of report.cells) c.median = c.iops.length > 0 ? median(c.iops) : null
  const qsd = report.cells.find((c) => c.target === 'qsd-file')?.median ?? null
  for (const c of report.cells) c.vsQsd = c.median !== null && qsd !== null && c.target !== 'qsd-file' ? c.median / qsd : null
  return report
}

/** The guest comparison as text. */
export function formatGuestReport(report: GuestReport): string {
  const lines = [`guest-visible: ${report.workload}; medians of ${report.runs} boots of ${report.runtimeS} s`]
  if (report.skipped !== undefined) return [...lines, `skipped: ${report.skipped}`].join('\n')
  const rows = report.cells.map((c) => [c.target, kilo(c.median), c.iops.map((x) => kilo(x)).join(' '), fixed(c.vsQsd, 2)])
  lines.push('', table(['target', 'IOPS', 'runs', 'vs qsd-file'], rows, 1))
  for (const c of report.cells) if (c.failures.length > 0) lines.push(`${c.target}: ${c.failures.length} failed boot(s): ${c.failures[0]}`)
  return lines.join('\n')
}

/** Boots the guest once against `socketPath`; fio's IOPS, or why there is none. */
function bootFio(opts: GuestBenchOptions, socketPath: string): Promise<number | string> {
  const vubArgs = `rw=${WORKLOAD.rw},bs=${WORKLOAD.bs},iodepth=${WORKLOAD.iodepth},runtime=${opts.runtimeS}`
  return new Promise((resolve) => {
    const proc = spawn(path.join(opts.root, 'vm', 'boot.sh'), [socketPath, 'fio-bench', '1', '128'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, VUB_ARGS: vubArgs, VUB_TIMEOUT: String(opts.runtimeS + 120) },
    })
    let out = ''
    proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    proc.stderr.setEncoding('utf8').on('data', (d: string) => { out += d })
    proc.once('exit', (code) => {
      const found = /VUB-RESULT fio_iops=(\d+)/.exec(out)
      if (code === 0 && found !== null) resolve(Number(found[1]))
      else resolve(`boot.sh exit ${code}: ${out.trim().split('\n').slice(-1)[0] ?? 'no output'}`)
    })
  })
}
