import { describe, it, expect, afterEach } from 'vitest'
import { closeSync, openSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import {
  close,
  eventfdCreate,
  eventfdRead,
  eventfdWrite,
  Poller,
  recvMsg,
  sendMsg,
  socketPair,
} from '../../src/native/index.js'
import { runNode, thrown } from './support.js'

const opened: number[] = []
const pollers: Poller[] = []

function own(fd: number): number {
  opened.push(fd)
  return fd
}

function poller(fd: number, onReadable: () => void): Poller {
  const p = new Poller(fd, onReadable)
  pollers.push(p)
  return p
}

afterEach(() => {
  for (const p of pollers.splice(0)) p.close()
  for (const fd of opened.splice(0)) close(fd)
})

/** Let the event loop run for `ms` milliseconds. */
function tick(ms = 30): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

describe('Poller', () => {
  it('fires on an eventfd write, with the Poller as this, and not after stop()', async () => {
    const efd = own(eventfdCreate())
    let calls = 0
    let self: unknown
    const p = poller(efd, function (this: Poller) {
      calls++
      self = this
      p.stop() // level-triggered: the counter is left unread on purpose
    })
    p.start()
    p.start() // idempotent
    await tick()
    expect(calls).toBe(0)

    eventfdWrite(efd)
    await tick()
    expect(calls).toBe(1)
    expect(self).toBe(p)
    await tick()
    expect(calls).toBe(1) // still readable, but stopped

    p.start()
    await tick()
    expect(calls).toBe(2)
    expect(eventfdRead(efd)).toBe(1)
  })

  it('keeps firing while the fd stays readable, until it is drained', async () => {
    const efd = own(eventfdCreate(1))
    let calls = 0
    const p = poller(efd, () => {
      if (++calls === 3) eventfdRead(efd)
    })
    p.start()
    await tick()
    expect(calls).toBe(3)
  })

  it('a stop() from another callback of the same loop turn prevents the call', async () => {
    const e1 = own(eventfdCreate(1))
    const e2 = own(eventfdCreate(1))
    let calls = 0
    const p1 = poller(e1, () => {
      calls++
      p1.stop()
      p2.stop()
    })
    const p2 = poller(e2, () => {
      calls++
      p1.stop()
      p2.stop()
    })
    p1.start()
    p2.start()
    await tick()
    expect(calls).toBe(1)
  })

  it('close() is idempotent, works inside the callback, and later calls are no-ops', async () => {
    const efd = own(eventfdCreate(1))
    let calls = 0
    const p = poller(efd, () => {
      calls++
      p.close()
      p.close()
    })
    p.start()
    await tick()
    expect(calls).toBe(1)
    p.start()
    p.ref()
    p.unref()
    p.stop()
    p.close()
    await tick()
    expect(calls).toBe(1)
  })

  it('runs microtasks queued by the callback right after it', async () => {
    const efd = own(eventfdCreate(1))
    const order: string[] = []
    const p = poller(efd, () => {
      eventfdRead(efd)
      setImmediate(() => order.push('immediate'))
      process.nextTick(() => order.push('tick'))
      void Promise.resolve().then(() => order.push('microtask'))
      order.push('callback')
      p.stop()
    })
    p.start()
    await tick()
    expect(order).toEqual(['callback', 'tick', 'microtask', 'immediate'])
  })

  it('after a poll error (peer reset) calls back once, stays stopped, and start() re-arms it', async () => {
    const [a, b] = socketPair()
    own(b)
    expect(sendMsg(b, new Uint8Array(4), 0, 4)).toBe(4) // unread by a: closing a resets b
    const seen: Array<string | number> = []
    const p = poller(b, () => {
      try {
        const got = recvMsg(b, new Uint8Array(4), 0, 4)
        seen.push(got === null ? 'EAGAIN' : got.bytes)
        if (got !== null && got.bytes === 0) p.stop()
      } catch (e) {
        seen.push((e as { code: string }).code)
      }
    })
    p.start()
    close(a)
    await tick()
    expect(seen).toEqual(['ECONNRESET']) // libuv stopped the watcher on POLLERR
    p.start()
    await tick()
    expect(seen).toEqual(['ECONNRESET', 0])
  })

  it('refuses a second open Poller on the same fd until the first is closed', () => {
    const efd = own(eventfdCreate())
    const p = poller(efd, () => {})
    expect(thrown(() => new Poller(efd, () => {}))).toMatchObject({ code: 'EEXIST', syscall: 'uv_poll_init' })
    p.close()
    poller(efd, () => {})
  })

  it('throws instead of crashing on bad fds and arguments', () => {
    expect(thrown(() => new Poller(-1, () => {}))).toMatchObject({ code: 'EBADF', syscall: 'uv_poll_init' })
    const file = openSync(fileURLToPath(import.meta.url), 'r')
    try {
      expect(thrown(() => new Poller(file, () => {}))).toMatchObject({ code: 'EPERM', syscall: 'uv_poll_init' })
    } finally {
      closeSync(file)
    }
    expect(thrown(() => new Poller(0, 'x' as unknown as () => void))).toMatchObject({
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
    })
    const call = Poller as unknown as (fd: number, cb: () => void) => Poller
    expect(thrown(() => call(0, () => {}))).toMatchObject({ name: 'TypeError', code: 'ERR_CONSTRUCT_CALL_REQUIRED' })
    expect(thrown(() => Poller.prototype.start.call({}))).toBeInstanceOf(TypeError)
    expect(thrown(() => Poller.prototype.stop.call(undefined))).toBeInstanceOf(TypeError)
  })

  it('start() on an fd closed behind its back throws EBADF instead of aborting in libuv', async () => {
    const efd = eventfdCreate(1)
    const p = poller(efd, () => {})
    close(efd)
    expect(thrown(() => p.start())).toMatchObject({ code: 'EBADF', syscall: 'epoll_ctl' })
    p.close()
    await tick()
  })
})

describe('Poller in a separate process', () => {
  const preamble = `
    const a = require(process.env.VHOST_NATIVE)
    const efd = a.eventfdCreate(1)
  `

  it('a throwing callback becomes an uncaught exception that a handler can catch', () => {
    const r = runNode(`${preamble}
      process.on('uncaughtException', (err) => { console.log('caught ' + err.message); p.close() })
      const p = new a.Poller(efd, () => { a.eventfdRead(efd); throw new Error('boom') })
      p.start()
    `)
    expect(r.stdout).toBe('caught boom\n')
    expect(r.status).toBe(0)
  })

  it('without a handler, a throwing callback ends the process like any uncaught error', () => {
    const r = runNode(`${preamble}
      const p = new a.Poller(efd, () => { throw new Error('boom') })
      p.start()
    `)
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('Error: boom')
  })

  it('an active ref()ed poller keeps the loop alive; unref() lets the process exit', () => {
    const idle = 'new a.Poller(a.eventfdCreate(), () => {})'
    const alive = runNode(`${preamble}; const p = ${idle}; p.start()`, [], 1000)
    expect(alive.signal).toBe('SIGTERM') // killed by the timeout
    const exits = runNode(`${preamble}; const p = ${idle}; p.start(); p.unref()`, [], 5000)
    expect(exits.signal).toBeNull()
    expect(exits.status).toBe(0)
  })

  it('garbage collection of unclosed pollers is safe; an active one is kept and still fires', () => {
    const r = runNode(
      `${preamble}
      ;(() => { new a.Poller(a.eventfdCreate(), () => {}) })()
      ;(() => { const p = new a.Poller(a.eventfdCreate(1), () => {}); p.start(); p.stop() })()
      let fired = 0
      const live = a.eventfdCreate()
      ;(() => { const p = new a.Poller(live, function () { fired++; a.eventfdRead(live); this.close() }); p.start() })()
      global.gc()
      setImmediate(() => { global.gc(); a.eventfdWrite(live); setTimeout(() => console.log('fired ' + fired), 50) })
      `,
      ['--expose-gc'],
    )
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('fired 1\n')
    expect(r.status).toBe(0)
  })

  it('worker threads may exit or be terminated with pollers still open', () => {
    const r = runNode(`
      const { Worker } = require('worker_threads')
      const body = \`
        const a = require(process.env.VHOST_NATIVE)
        const started = new a.Poller(a.eventfdCreate(), () => {}); started.start()
        const idle = new a.Poller(a.eventfdCreate(), () => {})
        const unrefd = new a.Poller(a.eventfdCreate(), () => {}); unrefd.start(); unrefd.unref()
      \`
      const exiting = new Worker(body + 'setTimeout(() => process.exit(0), 20)', { eval: true })
      exiting.on('exit', (code) => console.log('exited ' + code))
      // Kept alive by its started poller until terminated.
      const terminated = new Worker(body + 'require("worker_threads").parentPort.postMessage("ready")', { eval: true })
      terminated.on('message', () => setTimeout(() => terminated.terminate().then((code) => console.log('terminated ' + code)), 50))
    `)
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout.split('\n').sort()).toEqual(['', 'exited 0', 'terminated 1'])
  })
})
