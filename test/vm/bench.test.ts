/**
 * The guest-visible part of `npm run bench` end to end, on a tiny matrix: for each target (ours on
 * memory and on a tmpfs file, qemu-storage-daemon on that file) one TCG guest boots and runs fio,
 * and the table and the JSON report carry every target's IOPS and the ratios to qsd. Never asserts
 * speed. Skipped (with a printed reason) where QEMU is not installed, except under CI=true.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { GuestReport } from '../../src/bench/guest.js'
import { CLI } from '../helpers/server.js'
import { commandAvailable, ensureAssets, qemuAvailable } from '../helpers/vm.js'

const mustRun = process.env.CI === 'true'
const ready = qemuAvailable() && commandAvailable('qemu-storage-daemon')
if (!ready && !mustRun) console.warn('test/vm/bench.test.ts skipped: qemu-system-x86_64 or qemu-storage-daemon is not installed')

const MATRIX = path.join(path.dirname(CLI), 'bench', 'matrix-main.js')
const TIMEOUT_MS = 240_000

/** Runs the matrix to completion (asynchronously: vitest's timers keep running). */
function matrix(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [MATRIX, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => proc.kill('SIGKILL'), TIMEOUT_MS - 10_000)
    proc.once('exit', (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
}

describe.skipIf(!ready && !mustRun)('the guest-visible benchmark', () => {
  beforeAll(async () => {
    if (!ready) throw new Error('CI=true and QEMU or qemu-storage-daemon is not installed: the VM tests must run in CI')
    await ensureAssets()
  }, 15 * 60_000)

  it('boots a guest per target, runs fio, and reports IOPS and ratios to qsd', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-guest-bench-'))
    try {
      const r = await matrix([
        '--targets', 'ours-null', '--rows', '4k-randread-qd1-q1', '--runs', '1', '--runtime', '0.3', '--ramp', '0.1',
        '--size', '64M', '--out-dir', out, '--guest-runs', '1', '--guest-runtime', '2',
      ])
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/guest-visible: fio randread bs=4k iodepth=32/)
      const files = fs.readdirSync(out)
      const report = JSON.parse(fs.readFileSync(path.join(out, files[0]), 'utf8')) as { guest: GuestReport }
      expect(report.guest.skipped).toBeUndefined()
      expect(report.guest.cells.map((c) => c.target)).toEqual(['ours-memory', 'ours-file', 'qsd-file'])
      for (const c of report.guest.cells) {
        expect(c.failures, c.target).toEqual([])
        expect(c.iops).toHaveLength(1)
        expect(c.median).toBeGreaterThan(0)
        if (c.target !== 'qsd-file') expect(c.vsQsd).toBeGreaterThan(0)
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true })
    }
  }, TIMEOUT_MS)
})
