#!/usr/bin/env bash
# Boots the test guest under QEMU (TCG) with one vhost-user-blk disk served by a backend that is
# already listening on SOCKET, runs SCENARIO in the guest and exits with the scenario's status.
#
# Owns: the QEMU command line, the boot timeout, reading `VUB-DONE status=N` from the console.
# Does not own: building the guest (vm/build-assets.sh, run first unless VUB_NO_BUILD=1), the
# backend's lifetime, or what the guest does (vm/init, vm/scenarios/).
#
# Usage: vm/boot.sh SOCKET [SCENARIO=smoke] [NUM_QUEUES=1] [QUEUE_SIZE=128]
# SCENARIO "shell" gives an interactive shell on the console (Ctrl-A X quits QEMU).
# Environment: VUB_TIMEOUT (seconds before QEMU is killed, default 300; not for "shell"),
# VUB_ARGS (scenario arguments, k=v,k2=v2), VUB_KERNEL_ARGS (more kernel parameters), VUB_SMP
# (vCPUs, default min(NUM_QUEUES, 4): the guest driver uses at most one queue per vCPU),
# VUB_MEM (guest RAM, default 512M), VUB_RECONNECT (seconds: QEMU reconnects to a restarted backend), VUB_CPU (default max), VUB_QEMU (QEMU binary),
# VUB_VM_CACHE, VUB_NO_BUILD.
# Exit status: the scenario's status; 124 when QEMU was killed on timeout; 125 when the guest
# stopped without reporting VUB-DONE; 2 on bad arguments.
set -euo pipefail

VM_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VUB_VM_CACHE:-$VM_DIR/.cache}
QEMU=${VUB_QEMU:-qemu-system-x86_64}

usage() {
    echo "usage: $0 SOCKET [SCENARIO=smoke] [NUM_QUEUES=1] [QUEUE_SIZE=128]" >&2
    echo "scenarios: shell $(cd "$VM_DIR/scenarios" && ls -- *.sh | sed 's/\.sh$//' | tr '\n' ' ')" >&2
    exit 2
}
bad() {
    echo "boot.sh: $*" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 4 ]] || usage
socket=$1
scenario=${2:-smoke}
num_queues=${3:-1}
queue_size=${4:-128}
timeout_s=${VUB_TIMEOUT:-300}
mem=${VUB_MEM:-512M}

[[ -S $socket ]] || bad "$socket is not a listening Unix socket (start the backend first)"
[[ $scenario =~ ^[a-z0-9_-]+$ ]] || bad "bad scenario name '$scenario'"
[[ $scenario == shell || -f $VM_DIR/scenarios/$scenario.sh ]] || usage
[[ $num_queues =~ ^[0-9]+$ && $num_queues -ge 1 ]] || bad "NUM_QUEUES must be a positive integer"
[[ $queue_size =~ ^[0-9]+$ && $queue_size -ge 1 ]] || bad "QUEUE_SIZE must be a positive integer"
[[ $timeout_s =~ ^[0-9]+$ && $timeout_s -ge 1 ]] || bad "VUB_TIMEOUT must be a positive integer"
[[ ${VUB_ARGS:-} =~ ^[A-Za-z0-9_.=,/:-]*$ ]] || bad "VUB_ARGS may hold only [A-Za-z0-9_.=,/:-]"
smp=${VUB_SMP:-$((num_queues < 4 ? num_queues : 4))}

if [[ ${VUB_NO_BUILD:-} != 1 ]]; then
    "$VM_DIR/build-assets.sh" >&2
fi
[[ -f $CACHE/vmlinuz && -f $CACHE/initramfs.cpio.gz ]] || bad "no guest in $CACHE (run vm/build-assets.sh)"

append="console=ttyS0 quiet panic=-1 vub.scenario=$scenario"
[[ -z ${VUB_ARGS:-} ]] || append+=" vub.args=$VUB_ARGS"
[[ -z ${VUB_KERNEL_ARGS:-} ]] || append+=" $VUB_KERNEL_ARGS"

qemu_args=(
    -nodefaults -no-user-config -display none -no-reboot
    -accel tcg -cpu "${VUB_CPU:-max}" -smp "$smp" -m "$mem"
    -object "memory-backend-memfd,id=mem,size=$mem,share=on" -numa "node,memdev=mem"
    -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.cpio.gz" -append "$append"
    # QEMU options escape a comma by doubling it; reconnect=1 lets the guest outlive a backend restart.
    -chardev "socket,id=c0,path=${socket//,/,,}${VUB_RECONNECT:+,reconnect=$VUB_RECONNECT}"
    -device "vhost-user-blk-pci,chardev=c0,num-queues=$num_queues,queue-size=$queue_size"
)

if [[ $scenario == shell ]]; then
    exec "$QEMU" "${qemu_args[@]}" -serial mon:stdio
fi

log=$(mktemp "${TMPDIR:-/tmp}/vub-console.XXXXXX")
trap 'rm -f "$log"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --foreground keeps QEMU in this process group, so a caller that kills the group (the test
# harness, Ctrl-C) reaches it; -k: SIGKILL if QEMU ignores the SIGTERM.
set +e
timeout --foreground -k 5 "$timeout_s" "$QEMU" "${qemu_args[@]}" -serial stdio </dev/null | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e

status=$(grep -a -o 'VUB-DONE status=[0-9]*' "$log" | tail -n1 | cut -d= -f2 || true)
if [[ -n $status ]]; then
    exit "$status"
fi
if [[ $qemu_status -eq 124 || $qemu_status -eq 137 ]]; then
    echo "boot.sh: timed out after ${timeout_s}s; QEMU killed" >&2
    exit 124
fi
echo "boot.sh: the guest stopped without reporting VUB-DONE (QEMU exit status $qemu_status)" >&2
exit 125
