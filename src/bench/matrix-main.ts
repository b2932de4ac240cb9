#!/usr/bin/env node
/**
 * Entry of `npm run bench`: runs the matrix (matrix.ts) and then the guest-visible comparison
 * (guest.ts) with options from the command line, prints progress on stderr and the tables on
 * stdout, and writes the report as JSON to bench/results/<timestamp>.json (or --out-dir). Exit code 2 for a bad option, 1 when no cell
 * produced a result.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { parseSize } from '../daemon/size.js'
import { formatGuestReport, runGuestBench } from './guest.js'
import { WORKLOADS, formatMatrix, runMatrix } from './matrix.js'
import { TARGET_NAMES, type TargetName } from './targets.js'

/** The project root: this file is src/bench/ or dist/bench/. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

function fail(message: string): never {
  process.stderr.write(`bench matrix: ${message}\n`)
  process.exit(2)
}

/** `--targets a,b` / `--rows x,y`: every name must be known. */
function pick<T extends string>(what: string, given: string | undefined, known: readonly T[]): T[] {
  if (given === undefined || given === '') return [...known]
  const names = given.split(',').map((s) => s.trim())
  for (const n of names) if (!(known as readonly string[]).includes(n)) fail(`unknown ${what} '${n}' (known: ${known.join(', ')})`)
  return names as T[]
}

const argv = yargs(hideBin(process.argv))
  .scriptName('npm run bench --')
  .usage('$0 [options]: ours vs qemu-storage-daemon, medians of several runs per workload')
  .option('runtime', { type: 'number', default: 3, describe: 'measured seconds per run' })
  .option('ramp', { type: 'number', default: 0.5, describe: 'warm-up seconds per run' })
  .option('runs', { type: 'number', default: 3, describe: 'runs per workload and target (median reported)' })
  .option('size', { type: 'string', default: '1G', describe: 'disk size' })
  .option('targets', { type: 'string', describe: `comma-separated subset of ${TARGET_NAMES.join(',')}` })
  .option('rows', { type: 'string', describe: 'comma-separated subset of workload ids (see --list-rows)' })
  .option('guest-runs', { type: 'number', default: 3, describe: 'guest boots per target for the guest-visible fio comparison (0: skip it)' })
  .option('guest-runtime', { type: 'number', default: 10, describe: 'fio seconds per guest boot' })
  .option('list-rows', { type: 'boolean', default: false, describe: 'print the workload ids and exit' })
  .option('server-cli', { type: 'string', default: path.join(ROOT, 'dist', 'cli.js'), describe: 'our server entry point (compare builds)' })
  .option('file-dir', { type: 'string', default: '/dev/shm', describe: 'directory (tmpfs) for the backing files' })
  .option('out-dir', { type: 'string', default: path.join(ROOT, 'bench', 'results'), describe: 'where the JSON report goes' })
  .strict()
  .help()
  .parseSync()

if (argv.listRows) {
  for (const w of WORKLOADS) process.stdout.write(`${w.id}\n`)
  process.exit(0)
}
if (!(argv.runtime > 0) || !(argv.ramp >= 0)) fail('--runtime must be positive and --ramp not negative')
if (!Number.isInteger(argv.runs) || argv.runs < 1) fail('--runs must be a positive integer')
if (!Number.isInteger(argv.guestRuns) || argv.guestRuns < 0) fail('--guest-runs must be an integer, 0 or more')
if (!Number.isInteger(argv.guestRuntime) || argv.guestRuntime < 1) fail('--guest-runtime must be a positive integer')
let sizeBytes = 0
try {
  sizeBytes = parseSize(argv.size)
} catch (err) {
  fail(`--size: ${(err as Error).message}`)
}
if (sizeBytes < 16 << 20 || sizeBytes % (1 << 20) !== 0) fail('--size must be a multiple of 1M, at least 16M')
if (!fs.existsSync(argv.fileDir)) fail(`--file-dir ${argv.fileDir} does not exist`)
const targets = pick<TargetName>('target', argv.targets, TARGET_NAMES)
const rowIds = pick('row', argv.rows, WORKLOADS.map((w) => w.id))

const report = await runMatrix({
  runtimeS: argv.runtime,
  rampS: argv.ramp,
  runs: argv.runs,
  sizeBytes,
  targets,
  workloads: WORKLOADS.filter((w) => rowIds.includes(w.id)),
  serverCli: path.resolve(argv.serverCli),
  generator: path.join(ROOT, 'dist', 'bench', 'main.js'),
  fileDir: argv.fileDir,
  log: (line) => process.stderr.write(`${line}\n`),
})
const guest = argv.guestRuns === 0 ? null : await runGuestBench({
  runs: argv.guestRuns,
  runtimeS: argv.guestRuntime,
  sizeBytes,
  root: ROOT,
  serverCli: path.resolve(argv.serverCli),
  fileDir: argv.fileDir,
  log: (line) => process.stderr.write(`${line}\n`),
})
fs.mkdirSync(argv.outDir, { recursive: true })
const file = path.join(argv.outDir, `${report.startedAt.replace(/[:.]/g, '-')}.json`)
fs.writeFileSync(file, `${JSON.stringify({ ...report, guest }, null, 2)}\n`)
const guestText = guest === null ? '' : `\n\n${formatGuestReport(guest)}`
process.stdout.write(`${formatMatrix(report)}${guestText}\n\nwrote ${path.relative(process.cwd(), file)}\n`)
if (report.cells.every((c) => c.median === null)) process.exitCode = 1
