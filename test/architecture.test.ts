/**
 * The layer rule (DESIGN.md, STYLE.md §1) as a lint check: every import between src/ folders
 * must point down the allowed graph. A new edge is a design decision, made here on purpose.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src')

/** Folder → folders it may import from. */
const ALLOWED: Record<string, readonly string[]> = {
  native: [],
  mq: [],
  virtqueue: [],
  vhost: ['native', 'virtqueue'],
  // blk implements the engine's Device interface and uses its feature helpers; it never reaches sockets.
  blk: ['mq', 'virtqueue', 'vhost'],
  disks: ['mq', 'native'],
  frontend: ['native', 'virtqueue', 'vhost', 'blk'],
  daemon: ['native', 'mq', 'virtqueue', 'vhost', 'blk', 'disks', 'frontend'],
  // The load generator: drives the frontend, borrows the daemon's size parser.
  bench: ['frontend', 'daemon'],
  '.': ['daemon', 'frontend', 'bench'],
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : []
  })
}

it('imports between layers point down the allowed graph only', () => {
  const violations: string[] = []
  for (const file of sourceFiles(SRC)) {
    const layer = path.relative(SRC, path.dirname(file)).split(path.sep)[0] || '.'
    const text = fs.readFileSync(file, 'utf8')
    for (const m of text.matchAll(/from '(\.{1,2}\/[^']+)'/g)) {
      const target = path.relative(SRC, path.resolve(path.dirname(file), m[1])).split(path.sep)
      const targetLayer = target.length > 1 ? target[0] : '.'
      if (targetLayer === layer) continue
      if (!(ALLOWED[layer] ?? []).includes(targetLayer)) violations.push(`${path.relative(SRC, file)} imports ${m[1]}`)
    }
  }
  expect(violations).toEqual([])
})
