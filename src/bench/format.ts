/**
 * Human-readable renderings of benchmark results: one run (`vhost-user-blk bench`) and the
 * matrix table (`npm run bench`). Owns text layout only; `--json` output is the records as they are.
 */
import type { BenchResult } from './run.js'

/** Number with `digits` decimals, or '-' for null/NaN. */
export function fixed(n: number | null, digits: number): string {
  return n === null || Number.isNaN(n) ? '-' : n.toFixed(digits)
}

/** 123456 → '123.5k', for IOPS columns. */
export function kilo(n: number | null): string {
  if (n === null || Number.isNaN(n)) return '-'
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0)
}

/** A few lines describing one run. */
export function formatBenchResult(r: BenchResult): string {
  const l = r.latencyUs
  const server = r.serverCpuUsPerIo === null
    ? 'server - (give --server-pid)'
    : `server ${fixed(r.serverCpuUsPerIo, 2)} (${fixed((r.serverCpuCores ?? 0) * 100, 0)}% of a core)`
  return [
    `${r.rw} bs=${r.bs} iodepth=${r.iodepth} queues=${r.queues}: ${r.iops.toFixed(0)} IOPS, ${r.mibps.toFixed(1)} MiB/s, ` +
      `${r.errors} errors, ${r.ios} I/Os in ${r.seconds.toFixed(2)} s`,
    `  latency µs: p50 ${fixed(l.p50, 1)}  p99 ${fixed(l.p99, 1)}  p99.9 ${fixed(l.p999, 1)}  mean ${fixed(l.mean, 1)}  max ${fixed(l.max, 1)}`,
    `  cpu µs/IO: ${server}  generator ${fixed(r.generatorCpuUsPerIo, 2)} (${fixed(r.generatorCpuCores * 100, 0)}% of a core)`,
    `  notifications: ${fixed(r.kicksPerIo, 3)} kicks/IO, ${fixed(r.wakeupsPerIo, 3)} wakeups/IO`,
  ].join('\n')
}

/** Lays out rows of cells as left-aligned (first `leftColumns`) and right-aligned columns. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], leftColumns: number): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd()
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}
