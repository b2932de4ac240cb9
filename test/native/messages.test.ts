import { describe, it, expect, afterEach } from 'vitest'
import { spawnSync } from 'node:child_process'
import {
  close,
  eventfdCreate,
  eventfdRead,
  eventfdWrite,
  memfdCreate,
  recvMsg,
  sendMsg,
  socketPair,
} from '../../src/native/index.js'
import { countFdsTo, fdFlags, O_CLOEXEC, thrown, uniqueName } from './support.js'

const opened: number[] = []

/** Remember fd for closing after the test. */
function own(fd: number): number {
  opened.push(fd)
  return fd
}

afterEach(() => {
  for (const fd of opened.splice(0)) close(fd)
})

/**
 * Have a Python child send one byte with `count` memfds named `name` over the
 * socket `sendFd` (our fds are inherited as the child's 3 and 4). Python can
 * send more fds than sendMsg allows, and can turn on SO_PASSCRED on our
 * receiving end so that an SCM_CREDENTIALS message arrives.
 */
function pythonSend(sendFd: number, recvFd: number, count: number, name: string, passcred: boolean): void {
  const script = [
    'import array, os, socket, sys',
    's = socket.socket(fileno=3)',
    'r = socket.socket(fileno=4)',
    'if sys.argv[3] == "1": r.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)',
    'fds = [os.memfd_create(sys.argv[2]) for _ in range(int(sys.argv[1]))]',
    's.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])',
  ].join('\n')
  const r = spawnSync('python3', ['-c', script, String(count), name, passcred ? '1' : '0'], {
    stdio: ['ignore', 'inherit', 'pipe', sendFd, recvFd],
    encoding: 'utf8',
  })
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
}

describe('fd passing', () => {
  it('an eventfd really crosses a socketpair', () => {
    const [a, b] = socketPair().map(own)
    const efd = own(eventfdCreate())
    const header = new Uint8Array([0xaa, 0xbb])
    expect(sendMsg(a, header, 0, 2, [efd])).toBe(2)

    const into = new Uint8Array(16)
    const got = recvMsg(b, into, 4, 12)
    expect(got).not.toBeNull()
    expect(got!.bytes).toBe(2)
    expect(got!.fds).toHaveLength(1)
    const copy = own(got!.fds[0])
    expect(copy).not.toBe(efd)
    expect(fdFlags(copy) & O_CLOEXEC).toBe(O_CLOEXEC) // MSG_CMSG_CLOEXEC
    expect([...into.subarray(4, 6)]).toEqual([0xaa, 0xbb])

    eventfdWrite(copy, 7)
    expect(eventfdRead(efd)).toBe(7)
  })

  it('sends and receives 8 fds without leaking any', () => {
    const name = uniqueName('fdpass')
    const memfd = own(memfdCreate(name, 4096))
    expect(countFdsTo(name)).toBe(1)
    const [a, b] = socketPair().map(own)
    expect(sendMsg(a, new Uint8Array(1), 0, 1, Array(8).fill(memfd))).toBe(1)
    const got = recvMsg(b, new Uint8Array(1), 0, 1)!
    expect(got.fds).toHaveLength(8)
    expect(countFdsTo(name)).toBe(9)
    for (const fd of got.fds) close(fd)
    expect(countFdsTo(name)).toBe(1)
  })

  it('more than 8 fds is a RangeError on send', () => {
    const [a] = socketPair().map(own)
    const e = thrown(() => sendMsg(a, new Uint8Array(1), 0, 1, Array(9).fill(a)))
    expect(e).toBeInstanceOf(RangeError)
    expect(e.code).toBe('ERR_OUT_OF_RANGE')
  })

  it('more fds than fit (MSG_CTRUNC) throws EMSGSIZE and closes every fd that arrived', () => {
    const name = uniqueName('ctrunc')
    const [a, b] = socketPair().map(own)
    pythonSend(a, b, 12, name, false)
    expect(thrown(() => recvMsg(b, new Uint8Array(4), 0, 4))).toMatchObject({ code: 'EMSGSIZE', syscall: 'recvmsg' })
    expect(countFdsTo(name)).toBe(0)
  })

  it.each([0, 2])('a control message other than SCM_RIGHTS (with %i fds) throws EMSGSIZE and leaks no fd', (count) => {
    const name = uniqueName('creds')
    const [a, b] = socketPair().map(own)
    pythonSend(a, b, count, name, true) // SO_PASSCRED: an SCM_CREDENTIALS message arrives
    expect(thrown(() => recvMsg(b, new Uint8Array(4), 0, 4))).toMatchObject({ code: 'EMSGSIZE', syscall: 'recvmsg' })
    expect(countFdsTo(name)).toBe(0)
  })
})

describe('recvMsg / sendMsg', () => {
  it('recvMsg returns null when nothing is pending and bytes 0 at EOF', () => {
    const [a, b] = socketPair()
    own(b)
    const into = new Uint8Array(8)
    expect(recvMsg(b, into, 0, 8)).toBeNull()
    close(a)
    expect(recvMsg(b, into, 0, 8)).toEqual({ bytes: 0, fds: [] })
  })

  it('sendMsg returns -1 when the socket buffer is full', () => {
    const [a] = socketPair().map(own)
    const chunk = new Uint8Array(65536)
    let sent = 0
    let n: number
    while ((n = sendMsg(a, chunk, 0, chunk.length)) > 0) sent += n
    expect(n).toBe(-1)
    expect(sent).toBeGreaterThan(0)
  })

  it('sendMsg to a closed peer throws EPIPE instead of raising SIGPIPE', () => {
    const [a, b] = socketPair()
    own(a)
    close(b)
    expect(thrown(() => sendMsg(a, new Uint8Array(1), 0, 1))).toMatchObject({ code: 'EPIPE', syscall: 'sendmsg' })
  })

  it('validates the buffer and range', () => {
    const [a] = socketPair().map(own)
    const buf = new Uint8Array(8)
    expect(thrown(() => recvMsg(a, buf, 4, 5))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => recvMsg(a, buf, 9, 1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => recvMsg(a, buf, 8, 0))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => recvMsg(a, buf, 0, 0))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => recvMsg(a, buf, -1, 1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => sendMsg(a, buf, 0, 2 ** 40))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => recvMsg(a, new Uint16Array(4) as unknown as Uint8Array, 0, 1))).toMatchObject({
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
    })
    expect(thrown(() => sendMsg(a, buf, 0, 1, 'x' as unknown as number[]))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' })
    expect(thrown(() => sendMsg(a, buf, 0, 1, [0.5]))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
  })

  it('a bad fd throws EBADF', () => {
    const buf = new Uint8Array(1)
    expect(thrown(() => recvMsg(-1, buf, 0, 1))).toMatchObject({ code: 'EBADF', syscall: 'recvmsg' })
    expect(thrown(() => sendMsg(-1, buf, 0, 1))).toMatchObject({ code: 'EBADF', syscall: 'sendmsg' })
    const [a] = socketPair().map(own)
    expect(thrown(() => sendMsg(a, buf, 0, 1, [-1]))).toMatchObject({ code: 'EBADF', syscall: 'sendmsg' })
  })
})
