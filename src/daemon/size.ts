/**
 * Size arguments as users write them: `512`, `4K`, `1M`, `1G`, `1T` (binary units, optional `B`
 * or `iB` suffix, case-insensitive). Owns parsing only.
 */

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 }

/** Parses a size; throws an Error naming the bad text. */
export function parseSize(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0) throw new Error(`invalid size ${text}`)
    return text
  }
  const m = /^\s*(\d+)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text)
  if (m === null) throw new Error(`invalid size '${text}' (use e.g. 512, 4K, 1M, 1G, 1T)`)
  const value = Number(m[1]) * UNITS[m[2].toUpperCase()]
  if (!Number.isSafeInteger(value)) throw new Error(`size '${text}' is too large`)
  return value
}

/** Formats bytes the way parseSize reads them, in the largest exact unit (for messages). */
export function formatSize(bytes: number): string {
  for (const unit of ['P', 'T', 'G', 'M', 'K']) {
    const n = UNITS[unit]
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`
  }
  return String(bytes)
}
