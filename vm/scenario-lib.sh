# Shared helpers for guest scenarios; installed as /lib/vub/scenario-lib.sh and sourced by
# every vm/scenarios/*.sh (busybox sh).
#
# Owns: the result line format (`VUB-RESULT key=value`, one per line), failure counting and
# the scenario exit status, scenario arguments (vub.args), and disk I/O helpers (direct dd,
# checksums of disk ranges, dropping caches).
# Does not own: booting, module loading, `VUB-DONE` (vm/init), or what a scenario checks.
#
# Busybox sh runs its own applets before PATH, so the real (glibc) tools are called by full path.
# shellcheck shell=dash disable=SC2034 # busybox ash is dash-like; the tool paths are for scenarios

FIO=/usr/bin/fio
MKE2FS=/usr/sbin/mke2fs
E2FSCK=/usr/sbin/e2fsck
BLKDISCARD=/usr/sbin/blkdiscard
FSTRIM=/usr/sbin/fstrim

DEV=${VUB_DEV:-/dev/vda}
DISK=${DEV##*/}
SYS=/sys/block/$DISK
WORK=/tmp/vub
mkdir -p "$WORK"

VUB_FAILURES=0
set -o pipefail

# result KEY VALUE: one machine-readable line; keys are [A-Za-z0-9_.-], the value is the rest of
# the line.
result() {
    echo "VUB-RESULT $1=$2"
}

# fail KEY [WHY]: records a failed check.
fail() {
    VUB_FAILURES=$((VUB_FAILURES + 1))
    result "$1" FAIL
    [ -z "${2:-}" ] || echo "vub: $1 failed: $2"
}

# pass KEY: records a passed check.
pass() {
    result "$1" ok
}

# check KEY CMD...: runs CMD (output shown only when it fails) and records ok/FAIL under KEY.
check() {
    local key=$1
    shift
    if quiet "$@"; then pass "$key"; else fail "$key" "exit status $? from: $*"; fi
}

# check_fails KEY CMD...: like check, but CMD is expected to fail.
check_fails() {
    local key=$1
    shift
    if "$@" >"$WORK/check_fails.out" 2>&1; then
        cat "$WORK/check_fails.out"
        fail "$key" "expected a failure from: $*"
    else
        pass "$key"
    fi
}

# expect_eq KEY ACTUAL EXPECTED: records ok when the two strings are equal.
expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', expected '$3'"; fi
}

# quiet CMD...: runs CMD with its output captured; prints the output only when CMD fails.
quiet() {
    local out rc=0
    out=$(mktemp "$WORK/quiet.XXXXXX")
    "$@" >"$out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "vub: '$*' exited with $rc:"
        cat "$out"
    fi
    rm -f "$out"
    return "$rc"
}

# finish: exits the scenario with the number of failed checks (capped at 99).
finish() {
    echo "vub: ${0##*/}: $VUB_FAILURES failed check(s)"
    [ "$VUB_FAILURES" -le 99 ] || VUB_FAILURES=99
    exit "$VUB_FAILURES"
}

# arg NAME DEFAULT: the value of NAME in vub.args=NAME=value,other=value, else DEFAULT.
arg() {
    local kv
    for kv in $(echo "${VUB_ARGS:-}" | tr ',' ' '); do
        case $kv in
            "$1="*) echo "${kv#*=}"; return 0 ;;
        esac
    done
    echo "$2"
}

# sysfs FILE: a /sys/block/<disk>/ attribute, or empty when it cannot be read.
sysfs() {
    cat "$SYS/$1" 2>/dev/null || true
}

# disk_bytes: the disk's capacity in bytes (sysfs reports 512-byte sectors whatever the
# logical block size).
disk_bytes() {
    echo $(($(cat "$SYS/size") * 512))
}

# mq_count: the number of blk-mq hardware queues the guest created for the disk.
mq_count() {
    ls "$SYS/mq" | wc -l
}

# mounted DIR: true when a filesystem is mounted on DIR (busybox-static has no mountpoint).
mounted() {
    grep -q " $1 " /proc/mounts
}

# drop_caches: flushes dirty data and empties the page cache so later reads reach the device.
drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# random_file PATH BYTES: BYTES (a multiple of 512) of random data in a tmpfs file.
random_file() {
    if [ $(($2 % 65536)) -eq 0 ]; then
        dd if=/dev/urandom of="$1" bs=65536 count=$(($2 / 65536)) 2>/dev/null
    else
        dd if=/dev/urandom of="$1" bs=512 count=$(($2 / 512)) 2>/dev/null
    fi
}

# sum_file PATH: sha256 of a file.
sum_file() {
    sha256sum "$1" | cut -d' ' -f1
}

# sum_zero BYTES: sha256 of BYTES zero bytes.
sum_zero() {
    head -c "$1" /dev/zero | sha256sum | cut -d' ' -f1
}

# write_at FILE OFFSET [BS]: writes FILE to the disk at byte OFFSET with O_DIRECT, BS bytes per
# write (default 64 KiB; OFFSET and the file size must be multiples of the logical block size).
write_at() {
    local bs=${3:-65536}
    quiet dd if="$1" of="$DEV" bs="$bs" seek="$2" oflag=direct,seek_bytes conv=notrunc
}

# read_sum OFFSET LENGTH [direct]: sha256 of LENGTH bytes of the disk at byte OFFSET, read through
# the page cache or, with a third argument "direct", with O_DIRECT. Fails (pipefail) and shows
# dd's message when the read fails.
read_sum() {
    local flags=skip_bytes,count_bytes
    [ "${3:-}" != direct ] || flags=$flags,direct
    (dd if="$DEV" bs=65536 skip="$1" count="$2" iflag="$flags" 2>"$WORK/read.err" ||
        { cat "$WORK/read.err" >&2; false; }) | sha256sum | cut -d' ' -f1
}
