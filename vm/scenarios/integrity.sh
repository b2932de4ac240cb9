# Scenario integrity: writes of many shapes land exactly where they should and nowhere else.
#
# A copy of the first `span` bytes of the disk (the model) is kept in tmpfs; every write goes to
# the disk with O_DIRECT and to the model, including sector-sized and unaligned writes, writes that
# cross MiB boundaries, overlapping writes, large single requests and concurrent writers. The disk
# must then equal the model, read both with O_DIRECT and through the page cache.
#
# Results: span_bytes, wN=ok per write, concurrent=ok, direct=ok, buffered=ok,
# first_difference (byte, only on a mismatch). Arguments: span_mib (default 16).
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

MIB=1048576
bytes=$(disk_bytes)
span=$(($(arg span_mib 16) * MIB))
[ "$span" -le "$bytes" ] || span=$((bytes / MIB * MIB))
result span_bytes "$span"
if [ "$span" -lt $((8 * MIB)) ]; then
    fail span "the disk ($bytes bytes) is smaller than the 8 MiB this scenario writes"
    finish
fi

model=$WORK/model
check model_read dd if="$DEV" of="$model" bs="$MIB" count=$((span / MIB)) iflag=direct

# apply KEY OFFSET LENGTH BS: the same random data to the disk (O_DIRECT, BS per request) and
# to the model.
apply() {
    random_file "$WORK/w" "$3"
    if write_at "$WORK/w" "$2" "$4"; then
        pass "$1"
    else
        fail "$1" "write of $3 bytes at $2 (bs $4)"
    fi
    dd if="$WORK/w" of="$model" bs="$4" seek="$2" oflag=seek_bytes conv=notrunc 2>/dev/null
}

apply w_sector1 512 512 512
apply w_sector4095 $((4095 * 512)) 512 512
apply w_3sectors $((7 * 512)) 1536 1536
apply w_unaligned $((513 * 512)) 3584 3584
apply w_cross_mib $((MIB - 512)) 65536 65536
apply w_1mib_single $((2 * MIB + 512)) "$MIB" "$MIB"
apply w_overlap_a $((3 * MIB)) 65536 65536
apply w_overlap_b $((3 * MIB + 32768)) 65536 4096
apply w_4mib_at_end $((span - 4 * MIB)) $((4 * MIB)) $((4 * MIB))

# Concurrent writers on disjoint 1 MiB slots; the kernel spreads them over the hardware queues.
writers=4
i=0
while [ "$i" -lt "$writers" ]; do
    random_file "$WORK/c$i" "$MIB"
    i=$((i + 1))
done
pids=
i=0
while [ "$i" -lt "$writers" ]; do
    dd if="$WORK/c$i" of="$DEV" bs=131072 seek=$(((4 + i) * MIB)) oflag=direct,seek_bytes \
        conv=notrunc 2>"$WORK/c$i.err" &
    pids="$pids $!"
    i=$((i + 1))
done
concurrent_failed=0
for pid in $pids; do
    wait "$pid" || concurrent_failed=1
done
i=0
while [ "$i" -lt "$writers" ]; do
    dd if="$WORK/c$i" of="$model" bs="$MIB" seek=$((4 + i)) conv=notrunc 2>/dev/null
    i=$((i + 1))
done
if [ "$concurrent_failed" -eq 0 ]; then pass concurrent; else fail concurrent "a writer failed: $(cat "$WORK"/c*.err)"; fi

# compare KEY FLAGS: reads the span back (dd iflag FLAGS) and compares it with the model: by
# checksum (cmp is slow under TCG), then byte by byte only to report a mismatch.
compare() {
    local got
    drop_caches
    if ! got=$(dd if="$DEV" bs="$MIB" count=$((span / MIB)) iflag="$2" 2>"$WORK/disk.err" |
        sha256sum | cut -d' ' -f1); then
        fail "$1" "reading the disk back failed: $(cat "$WORK/disk.err")"
    elif [ "$got" = "$model_sum" ]; then
        pass "$1"
    else
        dd if="$DEV" of="$WORK/disk" bs="$MIB" count=$((span / MIB)) iflag=direct 2>/dev/null
        result first_difference "$(cmp -l "$model" "$WORK/disk" | head -n1 | awk '{ print $1 - 1 }')"
        rm -f "$WORK/disk"
        fail "$1" "the disk differs from the model"
    fi
}
model_sum=$(sum_file "$model")
compare direct direct
compare buffered fullblock

finish
