/**
 * `npm run bench` as a tool, on a tiny matrix (one row, one short run, a 16 MiB disk): it prints
 * the table, writes a JSON report that records the machine, every target (measured, or skipped
 * with a reason) and the ours/qsd ratios, and rejects unknown names. Never asserts speed. The
 * guest-visible part is skipped here (`--guest-runs 0`); test/vm/bench.test.ts runs it.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import type { MatrixReport } from '../../src/bench/matrix.js'
import { findQsd } from '../helpers/frontend.js'
import { CLI } from '../helpers/server.js'

const MATRIX = path.join(path.dirname(CLI), 'bench', 'matrix-main.js')

function matrix(args: string[]) {
  return spawnSync(process.execPath, [MATRIX, ...args], { encoding: 'utf8', timeout: 60_000 })
}

describe('the benchmark matrix', () => {
  it('runs, prints the table and writes a complete JSON report', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-matrix-'))
    try {
      const r = matrix([
        '--targets', 'ours-memory,qsd-file,ours-null', '--rows', '4k-randread-qd1-q1', '--runs', '1',
        '--runtime', '0.3', '--ramp', '0.1', '--size', '16M', '--out-dir', out, '--guest-runs', '0',
      ])
      expect(r.status).toBe(0)
      expect(r.stdout).toMatch(/workload +q +target +IOPS/)
      expect(r.stdout).toMatch(/4k randread QD1 +1 +ours-memory/)
      const files = fs.readdirSync(out)
      expect(files).toHaveLength(1)
      const report = JSON.parse(fs.readFileSync(path.join(out, files[0]), 'utf8')) as MatrixReport & { guest: unknown }
      // The guest comparison boots QEMU: test/vm/bench.test.ts runs it.
      expect(report.guest).toBeNull()
      expect(report.machine.cores).toBeGreaterThan(0)
      expect(report.machine.node).toBe(process.version)
      expect(report.config).toMatchObject({ runs: 1, runtimeS: 0.3, sizeBytes: 16 << 20 })
      expect(report.targets.map((t) => t.name)).toEqual(['ours-memory', 'qsd-file', 'ours-null'])
      for (const t of report.targets) {
        if (t.status === 'skipped') {
          expect(t.reason).toBeTruthy()
          expect(r.stdout).toContain(`skipped ${t.name}:`)
        }
      }
      const ok = report.targets.filter((t) => t.status === 'ok').map((t) => t.name)
      expect(ok).toContain('ours-memory')
      expect(report.cells.map((c) => c.target).sort()).toEqual([...ok].sort())
      for (const c of report.cells) {
        expect(c.runs).toHaveLength(1)
        expect(c.failures).toEqual([])
        expect(c.median?.iops).toBeGreaterThan(0)
        expect(c.median?.serverCpuUsPerIo).toBeGreaterThanOrEqual(0)
      }
      const ours = report.cells.find((c) => c.target === 'ours-memory')
      if (findQsd() !== null) {
        expect(ours?.vs?.target).toBe('qsd-file')
        expect(ours?.vs?.iops).toBeGreaterThan(0)
        expect(ours?.vs?.p50Us).toBeGreaterThan(0)
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true })
    }
  })

  it('rejects unknown targets and rows with exit code 2', () => {
    expect(matrix(['--targets', 'spdk']).status).toBe(2)
    expect(matrix(['--rows', '4k-trim']).status).toBe(2)
    const list = matrix(['--list-rows'])
    expect(list.status).toBe(0)
    expect(list.stdout.trim().split('\n')).toHaveLength(8)
  })
})
