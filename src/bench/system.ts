/**
 * What the benchmark reads from the operating system: another process's CPU time (utime + stime
 * from /proc/PID/stat, all threads, as `ps` and `top` count it) and a description of the machine
 * a result was measured on. Linux only. Control path: nothing here runs per I/O.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'

let ticksPerSecond = 0

/** USER_HZ, the unit of /proc/PID/stat times (`getconf CLK_TCK`; 100 on every Linux ABI we run on). */
function clockTicks(): number {
  if (ticksPerSecond === 0) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/**
 * CPU time process `pid` has used so far (user + system, every thread), in µs. The kernel counts
 * in ticks of 1/CLK_TCK s (10 ms), so measure over seconds, not milliseconds. Throws (ENOENT)
 * when the process does not exist.
 */
export function processCpuUs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Field 2 (comm) is in parentheses and may contain spaces: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // proc(5): utime is field 14 and stime field 15; fields[0] here is field 3 (state).
  const ticks = Number(fields[14 - 3]) + Number(fields[15 - 3])
  return (ticks * 1e6) / clockTicks()
}

/** The machine a benchmark ran on. */
export interface MachineInfo {
  cpuModel: string
  /** Logical CPUs this process may use. */
  cores: number
  kernel: string
  node: string
  memoryBytes: number
  hostname: string
}

/** Describes this machine (CPU model from /proc/cpuinfo). */
export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown'
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))
    if (m !== null) cpuModel = m[1].trim()
  } catch {
    // Not Linux: os.cpus() is all there is.
  }
  return {
    cpuModel,
    cores: os.availableParallelism(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    memoryBytes: os.totalmem(),
    hostname: os.hostname(),
  }
}
