/**
 * The rate limiter of I/O error lines: one line per errno code per interval, a count of the lines
 * held back (written with the next line or when the interval ends), codes limited separately.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { IoErrorLog, errnoName } from '../../src/disks/io-error-log.js'

function recorder() {
  const lines: Array<Record<string, unknown>> = []
  const log = {
    error: (obj: object, msg: string) => lines.push({ ...obj, msg }),
    warn: () => {},
    info: () => {},
  }
  return { log, lines }
}

beforeEach(() => {
  vi.useFakeTimers()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('IoErrorLog', () => {
  it('names errnos', () => {
    expect(errnoName(-28)).toBe('ENOSPC')
    expect(errnoName(-5)).toBe('EIO')
    expect(errnoName(-4242)).toBe('errno 4242')
  })

  it('writes one line per code per interval and accounts for every held-back error', () => {
    const { log, lines } = recorder()
    const errors = new IoErrorLog(log, '/img', 1000)
    errors.report(-28, { op: 'write', sector: 8 })
    for (let i = 0; i < 5; i++) errors.report(-28, { op: 'write', sector: 16 })
    errors.report(-5, { op: 'read', sector: 0 })
    expect(lines).toEqual([
      { image: '/img', code: 'ENOSPC', op: 'write', sector: 8, msg: 'I/O error: request failed' },
      { image: '/img', code: 'EIO', op: 'read', sector: 0, msg: 'I/O error: request failed' },
    ])
    vi.advanceTimersByTime(1000)
    expect(lines[2]).toEqual({ image: '/img', code: 'ENOSPC', suppressed: 5, msg: 'I/O errors: more requests failed' })
    expect(lines).toHaveLength(3)
    vi.advanceTimersByTime(1000)
    errors.report(-28, { op: 'write', sector: 24 })
    errors.report(-28, { op: 'write', sector: 32 })
    vi.advanceTimersByTime(300)
    expect(lines).toHaveLength(4)
    errors.close()
    expect(lines[4]).toMatchObject({ code: 'ENOSPC', suppressed: 1 })
  })

  it('a new line after the interval carries the count held back since the last one', () => {
    const { log, lines } = recorder()
    const errors = new IoErrorLog(log, '/img', 1000)
    errors.report(-5, {})
    errors.report(-5, {})
    vi.setSystemTime(Date.now() + 1500)
    errors.report(-5, { sector: 1 })
    expect(lines[1]).toMatchObject({ code: 'EIO', sector: 1, suppressed: 1 })
    vi.advanceTimersByTime(5000)
    expect(lines).toHaveLength(2)
  })
})
