/**
 * LatencyHistogram: nanosecond latencies counted in a fixed log-linear histogram, HdrHistogram's
 * layout with 64 sub-buckets per power of two. Values below 128 ns are exact; above, every value
 * lands in a bucket at most 1/64 (1.6 %) of its size wide. Recording is a few integer operations
 * on a preallocated Float64Array, so the load generator can record every I/O without allocating.
 *
 * Owns counting and percentile extraction only; the caller takes the timestamps.
 */

const SUB_BITS = 6
const SUB_BUCKETS = 1 << SUB_BITS
/** Below this every nanosecond value has its own bucket. */
const LINEAR_LIMIT = 2 * SUB_BUCKETS
/** Largest recordable value: the bucketing works on unsigned 32-bit integers (4.29 s). */
export const MAX_LATENCY_NS = 2 ** 32 - 1
const BUCKET_COUNT = bucketOf(MAX_LATENCY_NS) + 1

/** Bucket index of an integer `ns` in [0, 2^32). */
function bucketOf(ns: number): number {
  if (ns < LINEAR_LIMIT) return ns
  // 31 - clz32 is the index of the top bit (≥ 7 here), so shift ≥ 1 and ns >>> shift ∈ [64, 128).
  const shift = 31 - Math.clz32(ns) - SUB_BITS
  return shift * SUB_BUCKETS + (ns >>> shift)
}

/** Smallest value of bucket `i` and the bucket's width. */
function bucketRange(i: number): { low: number; width: number } {
  if (i < LINEAR_LIMIT) return { low: i, width: 1 }
  const shift = (i >> SUB_BITS) - 1
  const width = 2 ** shift
  // Multiplication, not <<: the top buckets exceed 2^31.
  return { low: ((i & (SUB_BUCKETS - 1)) + SUB_BUCKETS) * width, width }
}

/** A histogram of latencies in nanoseconds. */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKET_COUNT)
  /** Values recorded. */
  count = 0
  private sum = 0
  private minNs = Infinity
  private maxNs = 0

  /** Records one latency; negative values count as 0, values above MAX_LATENCY_NS as the maximum. */
  record(ns: number): void {
    const v = ns <= 0 ? 0 : ns >= MAX_LATENCY_NS ? MAX_LATENCY_NS : Math.floor(ns)
    this.counts[bucketOf(v)]++
    this.count++
    this.sum += v
    if (v < this.minNs) this.minNs = v
    if (v > this.maxNs) this.maxNs = v
  }

  /** Forgets every value. */
  reset(): void {
    this.counts.fill(0)
    this.count = 0
    this.sum = 0
    this.minNs = Infinity
    this.maxNs = 0
  }

  /** Mean in ns (exact), or NaN when empty. */
  mean(): number {
    return this.count === 0 ? NaN : this.sum / this.count
  }

  /** Smallest value recorded (exact), or NaN when empty. */
  min(): number {
    return this.count === 0 ? NaN : this.minNs
  }

  /** Largest value recorded (exact), or NaN when empty. */
  max(): number {
    return this.count === 0 ? NaN : this.maxNs
  }

  /**
   * The `p`-th percentile (0 < p ≤ 100) in ns: the value of rank ceil(p/100 · count), exact for
   * the first and last rank, else the middle of its bucket clamped to [min, max]; NaN when empty.
   */
  percentile(p: number): number {
    if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is not in (0, 100]`)
    if (this.count === 0) return NaN
    const rank = Math.max(1, Math.ceil((p / 100) * this.count))
    // The extremes are known exactly.
    if (rank === this.count) return this.maxNs
    if (rank === 1) return this.minNs
    let seen = 0
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.counts[i]
      if (seen >= rank) {
        const { low, width } = bucketRange(i)
        return Math.min(this.maxNs, Math.max(this.minNs, low + (width - 1) / 2))
      }
    }
    return this.maxNs
  }
}
