import { describe, it, expect } from 'vitest'
import { close, eventfdCreate, eventfdRead, eventfdWrite } from '../../src/native/index.js'
import { fdFlags, O_CLOEXEC, O_NONBLOCK, thrown } from './support.js'

describe('eventfd', () => {
  it('is non-blocking and close-on-exec, and starts at the initial count', () => {
    const fd = eventfdCreate(3)
    try {
      expect(fdFlags(fd) & O_NONBLOCK).toBe(O_NONBLOCK)
      expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC)
      expect(eventfdRead(fd)).toBe(3)
    } finally {
      close(fd)
    }
  })

  it('adds writes up, reads and resets the counter, and reads 0 when empty', () => {
    const fd = eventfdCreate()
    try {
      expect(eventfdRead(fd)).toBe(0)
      eventfdWrite(fd)
      eventfdWrite(fd, 5)
      expect(eventfdRead(fd)).toBe(6)
      expect(eventfdRead(fd)).toBe(0)
    } finally {
      close(fd)
    }
  })

  it('treats a saturated counter (EAGAIN) as success', () => {
    const fd = eventfdCreate()
    try {
      // 2048 writes of 2^53 - 1 exceed the counter's maximum of 2^64 - 2.
      for (let i = 0; i < 2048; i++) eventfdWrite(fd, Number.MAX_SAFE_INTEGER)
      expect(eventfdRead(fd)).toBeGreaterThan(2 ** 63)
    } finally {
      close(fd)
    }
  })

  it('rejects bad arguments with Node-style codes', () => {
    expect(thrown(() => eventfdCreate(-1))).toMatchObject({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => eventfdCreate(2 ** 32))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => eventfdWrite(0, 1.5))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => eventfdWrite(0, -1))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => eventfdRead('3' as unknown as number))).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
    expect(thrown(() => close(NaN))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
    expect(thrown(() => close(2 ** 31))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' })
  })
})

describe('errno errors', () => {
  it('close(-1) throws EBADF with errno, syscall and a Node-style message', () => {
    const e = thrown(() => close(-1))
    expect(e).toBeInstanceOf(Error)
    expect(e.code).toBe('EBADF')
    expect(e.errno).toBe(-9)
    expect(e.syscall).toBe('close')
    expect(e.message).toBe('EBADF: Bad file descriptor, close')
  })

  it('close of an already closed fd throws EBADF', () => {
    const fd = eventfdCreate()
    close(fd)
    expect(thrown(() => close(fd))).toMatchObject({ code: 'EBADF', syscall: 'close' })
  })

  it('eventfdRead and eventfdWrite on a bad fd throw EBADF', () => {
    const fd = eventfdCreate()
    close(fd)
    expect(thrown(() => eventfdRead(fd))).toMatchObject({ code: 'EBADF', syscall: 'read' })
    expect(thrown(() => eventfdWrite(fd))).toMatchObject({ code: 'EBADF', syscall: 'write' })
    expect(thrown(() => eventfdRead(-5))).toMatchObject({ code: 'EBADF', syscall: 'read' })
  })
})
