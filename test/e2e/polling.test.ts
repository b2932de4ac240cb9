/**
 * Adaptive polling (`--poll-us`) through the real server and socket: a guest that keeps a queue
 * busy stops having to kick once the window has grown, every I/O still completes, and once the
 * guest goes idle the server re-enables kicks (the next request needs one again). With
 * `--poll-us 0` every request of a queue-depth-1 guest needs its kick.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { runLoad, type LoadOptions } from '../../src/frontend/index.js'
import { withClient } from '../helpers/frontend.js'
import { problems, startServer, type ServerProcess } from '../helpers/server.js'

const QD1: LoadOptions = { rw: 'randread', bs: 4096, iodepth: 1, queues: 1, runtimeMs: 60_000, ioLimit: 3000 }

let server: ServerProcess | null = null

afterEach(async () => {
  await server?.stop()
  server = null
})

describe.each([
  { where: 'on the main thread', args: [] },
  { where: 'on an I/O thread', args: ['--io-threads', '1'] },
])('adaptive polling $where', ({ args }) => {
  it('a busy queue-depth-1 guest kicks rarely once the window grew; an idle one must kick again', async () => {
    server = await startServer(['--memory', '16M', '--num-queues', '1', '--poll-us', '10000', ...args])
    await withClient(server.socketPath, {}, async (c) => {
      const busy = await runLoad(c, QD1)
      expect(busy.ios).toBe(3000)
      expect(busy.errors).toBe(0)
      // The window doubles from 4 µs with each quick kick: after about a dozen it spans the
      // guest's round trip and the rest ride on polling.
      expect(busy.kicks).toBeLessThan(busy.ios / 5)
      // Idle for longer than the window: the server went back to sleeping on the kick eventfd.
      await new Promise((r) => setTimeout(r, 100))
      const one = await runLoad(c, { ...QD1, ioLimit: 1 })
      expect(one.ios).toBe(1)
      expect(one.kicks).toBe(1)
    })
    expect(problems(server)).toEqual([])
  })

  it('with --poll-us 0 every request of a queue-depth-1 guest needs a kick', async () => {
    server = await startServer(['--memory', '16M', '--num-queues', '1', '--poll-us', '0', ...args])
    await withClient(server.socketPath, {}, async (c) => {
      const r = await runLoad(c, { ...QD1, ioLimit: 500 })
      expect(r.ios).toBe(500)
      expect(r.kicks).toBe(500)
    })
  })
})
