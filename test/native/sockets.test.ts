import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, openSync, closeSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  close,
  recvMsg,
  sendMsg,
  setNonBlocking,
  socketPair,
  unixAccept,
  unixConnect,
  unixListen,
} from '../../src/native/index.js'
import { fdFlags, O_CLOEXEC, O_NONBLOCK, thrown } from './support.js'

let dir: string
const opened: number[] = []

/** Remember fd for closing after the test. */
function own(fd: number): number {
  opened.push(fd)
  return fd
}

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'vhost-native-'))
})

afterEach(() => {
  for (const fd of opened.splice(0)) close(fd)
  rmSync(dir, { recursive: true, force: true })
})

function expectNonBlockingCloexec(fd: number): void {
  expect(fdFlags(fd) & (O_NONBLOCK | O_CLOEXEC)).toBe(O_NONBLOCK | O_CLOEXEC)
}

describe('unixListen', () => {
  it.each([0o600, 0o660])('creates the socket file with mode %o', (mode) => {
    const sock = path.join(dir, 's.sock')
    const lfd = own(unixListen(sock, mode))
    const st = statSync(sock)
    expect(st.isSocket()).toBe(true)
    expect(st.mode & 0o7777).toBe(mode)
    expectNonBlockingCloexec(lfd)
  })

  it('does not replace an existing file: EADDRINUSE from bind', () => {
    const sock = path.join(dir, 's.sock')
    own(unixListen(sock, 0o600))
    expect(thrown(() => unixListen(sock, 0o600))).toMatchObject({ code: 'EADDRINUSE', syscall: 'bind' })
  })

  it('refuses a path too long for sun_path and bad arguments', () => {
    expect(thrown(() => unixListen(path.join(dir, 'x'.repeat(120)), 0o600))).toMatchObject({
      code: 'ENAMETOOLONG',
      syscall: 'bind',
    })
    expect(thrown(() => unixListen('', 0o600))).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
    expect(thrown(() => unixListen('a\0b', 0o600))).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' })
    expect(thrown(() => unixListen(42 as unknown as string, 0o600))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
    expect(thrown(() => unixListen(path.join(dir, 'm.sock'), 0o10000))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => unixListen(path.join(dir, 'b.sock'), 0o600, -1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
  })
})

describe('unixConnect / unixAccept', () => {
  it('accept returns -1 with nothing pending and an fd once a client connected', () => {
    const sock = path.join(dir, 's.sock')
    const lfd = own(unixListen(sock, 0o600))
    expect(unixAccept(lfd)).toBe(-1)

    const client = own(unixConnect(sock))
    expectNonBlockingCloexec(client)
    const server = unixAccept(lfd)
    expect(server).toBeGreaterThanOrEqual(0)
    own(server)
    expectNonBlockingCloexec(server)
    expect(unixAccept(lfd)).toBe(-1)

    const out = new Uint8Array([1, 2, 3, 4])
    expect(sendMsg(client, out, 0, 4)).toBe(4)
    const into = new Uint8Array(8)
    expect(recvMsg(server, into, 0, 8)).toEqual({ bytes: 4, fds: [] })
    expect([...into.subarray(0, 4)]).toEqual([1, 2, 3, 4])
  })

  it('throws ENOENT without a socket file and ECONNREFUSED without a listener', () => {
    const sock = path.join(dir, 's.sock')
    expect(thrown(() => unixConnect(sock))).toMatchObject({ code: 'ENOENT', syscall: 'connect' })
    close(unixListen(sock, 0o600)) // leaves the file, nobody listening
    expect(thrown(() => unixConnect(sock))).toMatchObject({ code: 'ECONNREFUSED', syscall: 'connect' })
  })

  it('accept on a bad fd throws EBADF', () => {
    expect(thrown(() => unixAccept(-1))).toMatchObject({ code: 'EBADF', syscall: 'accept4' })
  })
})

describe('socketPair / setNonBlocking', () => {
  it('gives a connected, non-blocking, close-on-exec pair', () => {
    const [a, b] = socketPair().map(own)
    expectNonBlockingCloexec(a)
    expectNonBlockingCloexec(b)
    expect(sendMsg(b, new Uint8Array([9]), 0, 1)).toBe(1)
    const into = new Uint8Array(1)
    expect(recvMsg(a, into, 0, 1)).toEqual({ bytes: 1, fds: [] })
    expect(into[0]).toBe(9)
  })

  it('setNonBlocking sets O_NONBLOCK on a blocking fd', () => {
    const fd = openSync('/dev/null', 'r')
    try {
      expect(fdFlags(fd) & O_NONBLOCK).toBe(0)
      setNonBlocking(fd)
      expect(fdFlags(fd) & O_NONBLOCK).toBe(O_NONBLOCK)
    } finally {
      closeSync(fd)
    }
    expect(thrown(() => setNonBlocking(fd))).toMatchObject({ code: 'EBADF', syscall: 'fcntl' })
  })
})
