/**
 * The command line as users meet it: option errors, capabilities, the socket file's life cycle
 * (mode, stale replaced, live refused, removed on exit) and signals.
 */
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import * as native from '../../src/native/index.js'
import { FrontendReq } from '../../src/vhost/messages.js'
import { RawFrontend } from '../helpers/raw-frontend.js'
import { CLI, startServer, waitFor, type ServerProcess } from '../helpers/server.js'

function run(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 })
}

const running: ServerProcess[] = []
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop('SIGKILL')
})

describe('option errors', () => {
  it.each([
    [['--memory', '12Q'], /--memory: invalid size '12Q'/],
    [['--memory', '1000'], /multiple of the logical block size/],
    [['--logical-block-size', '1000'], /--logical-block-size must be 512 or 4096/],
    [['--num-queues', '0'], /--num-queues must be an integer from 1/],
    [['--queue-size', '100'], /--queue-size must be a power of 2/],
    [['--queue-depth', '0'], /--queue-depth must be an integer/],
    [['--serial', 'x'.repeat(21)], /--serial must be at most 20/],
    [['--log-level', 'loud'], /--log-level must be one of/],
    [['--no-such-option'], /Unknown argument/],
    [['--fd', '3', '--socket-path', '/tmp/x'], /mutually exclusive/],
    [['--null', '1G', '--memory', '1G'], /--null, --memory and --file are mutually exclusive/],
  ])('%j exits 2 with one clear line', (args, message) => {
    const r = run(args)
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })
})

it('--print-capabilities prints the block backend JSON', () => {
  const r = run(['--print-capabilities'])
  expect(r.status).toBe(0)
  expect(JSON.parse(r.stdout)).toEqual({ type: 'block', features: ['read-only', 'blk-file'] })
})

describe('socket file', () => {
  it('is created with mode 0600, printed as QEMU arguments, and removed on SIGTERM (exit 0)', async () => {
    const s = await startServer(['--memory', '4M'])
    expect(fs.statSync(s.socketPath).mode & 0o777).toBe(0o600)
    expect(await s.stop('SIGTERM')).toBe(0)
    expect(fs.existsSync(s.socketPath)).toBe(false)
  })

  it('SIGINT also exits 0', async () => {
    const s = await startServer(['--memory', '4M'])
    expect(await s.stop('SIGINT')).toBe(0)
  })

  it('replaces a stale socket file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-stale-'))
    const socketPath = path.join(dir, 'stale.sock')
    native.close(native.unixListen(socketPath, 0o600))
    expect(fs.existsSync(socketPath)).toBe(true)
    const s = await startServer(['--memory', '4M'], { socketPath })
    running.push(s)
    const fd = native.unixConnect(socketPath)
    native.close(fd)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('refuses a socket another server is listening on', async () => {
    const s = await startServer(['--memory', '4M'])
    running.push(s)
    const r = run(['--socket-path', s.socketPath, '--memory', '4M'])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/another server is listening/)
  })

  it('--fd serves on an inherited listening socket and leaves its file alone', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-fd-'))
    const socketPath = path.join(dir, 'inherited.sock')
    const listenFd = native.unixListen(socketPath, 0o600)
    const child = spawn(process.execPath, [CLI, '--fd', '3', '--memory', '4M'], { stdio: ['ignore', 'ignore', 'pipe', listenFd] })
    native.close(listenFd)
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    try {
      await waitFor(() => stderr.includes('"msg":"serving"'), 10_000, 'the server to serve')
      const c = RawFrontend.connect(socketPath)
      expect(await c.call(FrontendReq.GET_FEATURES)).toHaveLength(8)
      c.close()
    } finally {
      child.kill('SIGTERM')
      await new Promise((r) => child.on('exit', r))
    }
    expect(fs.existsSync(socketPath)).toBe(true)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('refuses to replace a file that is not a socket', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-file-'))
    const file = path.join(dir, 'not-a-socket')
    fs.writeFileSync(file, 'precious')
    const r = run(['--socket-path', file, '--memory', '4M'])
    expect(r.status).toBe(1)
    expect(fs.readFileSync(file, 'utf8')).toBe('precious')
    fs.rmSync(dir, { recursive: true, force: true })
  })
})
