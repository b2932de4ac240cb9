/**
 * `bench` as a tool: runBench against the real server reports every field with sane values, the
 * stand-alone entry prints text or one JSON object, rejects bad options with exit code 2, and
 * fails with exit code 1 and a reason when the back-end or the server pid is missing. Against
 * qemu-storage-daemon too, where it is installed. Never asserts speed.
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BenchError, runBench, type BenchResult } from '../../src/bench/run.js'
import { findQsd, withQsd } from '../helpers/frontend.js'
import { CLI, startServer, type ServerProcess } from '../helpers/server.js'

const GENERATOR = path.join(path.dirname(CLI), 'bench', 'main.js')

function bench(args: string[]) {
  return spawnSync(process.execPath, [GENERATOR, ...args], { encoding: 'utf8', timeout: 30_000 })
}

function expectSane(r: BenchResult, withServer: boolean): void {
  expect(r.ios).toBeGreaterThan(0)
  expect(r.errors).toBe(0)
  expect(r.seconds).toBeGreaterThan(0.2)
  expect(r.iops).toBeCloseTo(r.ios / r.seconds, 6)
  expect(r.mibps).toBeCloseTo((r.iops * r.bs) / 2 ** 20, 6)
  const l = r.latencyUs
  expect(l.p50).toBeGreaterThan(0)
  expect(l.p50).toBeLessThanOrEqual(l.p99)
  expect(l.p99).toBeLessThanOrEqual(l.p999)
  expect(l.p999).toBeLessThanOrEqual(l.max)
  expect(r.generatorCpuUsPerIo).toBeGreaterThan(0)
  expect(r.kicksPerIo).toBeGreaterThan(0)
  expect(r.wakeupsPerIo).toBeGreaterThan(0)
  if (withServer) {
    expect(r.serverCpuUsPerIo).toBeGreaterThanOrEqual(0)
    expect(r.serverCpuCores).toBeGreaterThanOrEqual(0)
  } else {
    expect(r.serverCpuUsPerIo).toBeNull()
  }
}

describe('bench against our server', () => {
  let server: ServerProcess

  beforeAll(async () => {
    server = await startServer(['--memory', '64M', '--num-queues', '2'])
  })

  afterAll(async () => {
    await server?.stop()
  })

  it('runs every access pattern and reports sane figures', async () => {
    const pid = server.proc.pid as number
    for (const [rw, bs, iodepth, queues] of [['randread', 4096, 1, 1], ['randwrite', 4096, 16, 2], ['read', 1 << 20, 4, 1], ['write', 65536, 4, 2]] as const) {
      const r = await runBench({ socketPath: server.socketPath, rw, bs, iodepth, queues, runtimeS: 0.3, rampS: 0.1, serverPid: pid })
      expect({ rw: r.rw, bs: r.bs, iodepth: r.iodepth, queues: r.queues }).toEqual({ rw, bs, iodepth, queues })
      expectSane(r, true)
    }
  })

  it('prints one JSON object with --json, and text without', () => {
    const common = ['--socket-path', server.socketPath, '--runtime', '0.3', '--ramp', '0', '--bs', '8K', '--iodepth', '4']
    const json = bench([...common, '--json', '--server-pid', String(server.proc.pid)])
    expect(json.status).toBe(0)
    const r = JSON.parse(json.stdout) as BenchResult
    expect(r.bs).toBe(8192)
    expectSane(r, true)
    const text = bench([...common, '--rw', 'randwrite', '--batch', '4'])
    expect(text.status).toBe(0)
    expect(text.stdout).toMatch(/^randwrite bs=8192 iodepth=4 queues=1: \d+ IOPS/)
    expect(text.stdout).toContain('p99.9')
  })

  it('rejects bad options with exit code 2 and one line', () => {
    for (const bad of [['--rw', 'trim'], ['--bs', '1000'], ['--iodepth', '0'], ['--runtime', '0'], ['--bogus']]) {
      const r = bench(['--socket-path', server.socketPath, ...bad])
      expect(r.status).toBe(2)
      expect(r.stdout).toBe('')
    }
    expect(bench([]).status).toBe(2)
  })

  it('fails with exit code 1 and a reason without a back-end or with a wrong server pid', async () => {
    const none = bench(['--socket-path', path.join(server.dir, 'nothing.sock'), '--runtime', '0.2'])
    expect(none.status).toBe(1)
    expect(none.stderr).toContain('ENOENT')
    const gone = bench(['--socket-path', server.socketPath, '--runtime', '0.2', '--server-pid', '2147483646'])
    expect(gone.status).toBe(1)
    expect(gone.stderr).toContain('EBENCH_SERVER_PID')
    await expect(runBench({ socketPath: server.socketPath, rw: 'read', bs: 4096, iodepth: 1, queues: 1, runtimeS: 0.1, serverPid: 2147483646 }))
      .rejects.toBeInstanceOf(BenchError)
  })
})

describe.skipIf(findQsd() === null)('bench against qemu-storage-daemon', () => {
  it('drives its null-co and file exports', async () => {
    for (const backing of ['null', 'file'] as const) {
      await withQsd({ backing, numQueues: 2 }, async (qsd) => {
        const r = await runBench({ socketPath: qsd.socketPath, rw: 'randread', bs: 4096, iodepth: 8, queues: 2, runtimeS: 0.3, rampS: 0.1, serverPid: qsd.proc.pid })
        expectSane(r, true)
      })
    }
  })
})
