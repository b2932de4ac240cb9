/**
 * LatencyHistogram against exact nearest-rank percentiles: values below 128 ns are exact, larger
 * ones within one bucket (1/64 of the value); min, max and mean are exact.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LatencyHistogram, MAX_LATENCY_NS } from '../../src/frontend/index.js'

function exactPercentile(sorted: number[], p: number): number {
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1]
}

describe('LatencyHistogram', () => {
  it('is empty at first and after reset', () => {
    const h = new LatencyHistogram()
    expect(h.percentile(50)).toBeNaN()
    expect(h.mean()).toBeNaN()
    h.record(1000)
    expect(h.count).toBe(1)
    h.reset()
    expect(h.count).toBe(0)
    expect(h.max()).toBeNaN()
    expect(() => h.percentile(0)).toThrow(RangeError)
    expect(() => h.percentile(101)).toThrow(RangeError)
  })

  it('keeps small values exactly', () => {
    const h = new LatencyHistogram()
    for (let v = 0; v < 128; v++) h.record(v)
    expect(h.percentile(50)).toBe(63)
    expect(h.percentile(100)).toBe(127)
    expect(h.min()).toBe(0)
  })

  it('clamps values outside its range', () => {
    const h = new LatencyHistogram()
    h.record(-5)
    h.record(2 ** 40)
    expect(h.min()).toBe(0)
    expect(h.max()).toBe(MAX_LATENCY_NS)
    expect(h.percentile(100)).toBe(MAX_LATENCY_NS)
  })

  it('puts every percentile within 1/64 of the exact one', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: MAX_LATENCY_NS }), { minLength: 1, maxLength: 300 }),
        fc.double({ min: 0.1, max: 100, noNaN: true }),
        (values, p) => {
          const h = new LatencyHistogram()
          for (const v of values) h.record(v)
          const sorted = [...values].sort((a, b) => a - b)
          const exact = exactPercentile(sorted, p)
          expect(Math.abs(h.percentile(p) - exact)).toBeLessThanOrEqual(exact / 64 + 0.5)
          expect(h.max()).toBe(sorted[sorted.length - 1])
          expect(h.min()).toBe(sorted[0])
          expect(h.mean()).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 3)
        },
      ),
    )
  })
})
