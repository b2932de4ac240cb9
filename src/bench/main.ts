#!/usr/bin/env node
/**
 * Stand-alone entry of the load generator (`node dist/bench/main.js --socket-path S ...`): the
 * `bench` command without the rest of the CLI. The benchmark matrix runs each measurement through
 * it, so the generator always has a process of its own.
 */
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { benchCommand } from './command.js'

yargs(hideBin(process.argv))
  .scriptName('vhost-user-blk-bench')
  .command({ ...benchCommand, command: '$0' })
  .strict()
  .help()
  .fail((msg, err) => {
    // yargs' own complaints (unknown option, wrong type) are usage errors, as in src/cli.ts.
    if (err !== undefined && err !== null) throw err
    process.stderr.write(`vhost-user-blk bench: ${msg}\n`)
    process.exit(2)
  })
  .parse()
