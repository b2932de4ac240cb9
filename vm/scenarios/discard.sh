# Scenario discard: DISCARD and WRITE_ZEROES reach the device with the right ranges.
#
# Fills 8 MiB at 3 MiB with random data, then `blkdiscard` [4, 5) MiB, `blkdiscard -z` [6, 7) MiB
# and 7 sectors at 9 MiB + 512. Zeroed ranges must read back as zeroes and every byte around
# them must be unchanged; what a discarded range reads back as is reported, not checked.
# Then the whole disk is discarded, and fstrim runs on a mounted ext4 with deleted files.
# Results: discard_max_bytes, write_zeroes_max_bytes, discard, zeroout, zeroout_unaligned,
# around_intact, zeroes (each ok|FAIL), discard_reads_zero (yes|no), discard_all, mkfs, mount,
# fstrim, fstrim_bytes, fsck_clean. Arguments: none.
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

MIB=1048576
result discard_max_bytes "$(sysfs queue/discard_max_bytes)"
result write_zeroes_max_bytes "$(sysfs queue/write_zeroes_max_bytes)"
if [ "$(disk_bytes)" -lt $((16 * MIB)) ]; then
    fail disk_size "this scenario needs a disk of at least 16 MiB"
    finish
fi

base=$((3 * MIB))
len=$((8 * MIB))
random_file "$WORK/fill" "$len"
check fill write_at "$WORK/fill" "$base" "$MIB"

check discard "$BLKDISCARD" -f -o $((4 * MIB)) -l "$MIB" "$DEV"
check zeroout "$BLKDISCARD" -f -z -o $((6 * MIB)) -l "$MIB" "$DEV"
check zeroout_unaligned "$BLKDISCARD" -f -z -o $((9 * MIB + 512)) -l 3584 "$DEV"

# The expected content: the fill with the zeroed ranges cleared; the discarded MiB is taken
# from the disk because a discard only says the data is no longer needed.
drop_caches
dd if="$DEV" of="$WORK/disk" bs="$MIB" skip=3 count=8 iflag=direct 2>/dev/null
cp "$WORK/fill" "$WORK/expected"
dd if=/dev/zero of="$WORK/expected" bs="$MIB" seek=3 count=1 conv=notrunc 2>/dev/null
dd if=/dev/zero of="$WORK/expected" bs=512 seek=$((6 * 2048 + 1)) count=7 conv=notrunc 2>/dev/null
dd if="$WORK/disk" of="$WORK/expected" bs="$MIB" skip=1 seek=1 count=1 conv=notrunc 2>/dev/null
if cmp -s "$WORK/expected" "$WORK/disk"; then
    pass around_intact
else
    result first_difference "$(cmp -l "$WORK/expected" "$WORK/disk" | head -n1 | awk -v b="$base" '{ print b + $1 - 1 }')"
    fail around_intact "the disk differs outside the discarded MiB"
fi
zero_mib=$(sum_zero "$MIB")
zeroed=$(dd if="$WORK/disk" bs="$MIB" skip=3 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
zeroed_small=$(dd if="$WORK/disk" bs=512 skip=$((6 * 2048 + 1)) count=7 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$zeroed" = "$zero_mib" ] && [ "$zeroed_small" = "$(sum_zero 3584)" ]; then
    pass zeroes
else
    fail zeroes "a range written with blkdiscard -z does not read back as zeroes"
fi
discarded=$(dd if="$WORK/disk" bs="$MIB" skip=1 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$discarded" = "$zero_mib" ]; then result discard_reads_zero yes; else result discard_reads_zero no; fi
rm -f "$WORK/disk" "$WORK/expected" "$WORK/fill"

check discard_all "$BLKDISCARD" -f "$DEV"

MNT=/mnt/fs
mkdir -p "$MNT"
check mkfs "$MKE2FS" -t ext4 -F -q -E nodiscard "$DEV"
check mount mount -t ext4 "$DEV" "$MNT"
if mounted "$MNT"; then
    random_file "$WORK/f" $((4 * MIB))
    cp "$WORK/f" "$MNT/a" && cp "$WORK/f" "$MNT/b" && sync && rm -f "$MNT/a" "$MNT/b" && sync
    if "$FSTRIM" -v "$MNT" >"$WORK/fstrim.out" 2>&1; then
        pass fstrim
        result fstrim_bytes "$(sed -n 's/.*(\([0-9]*\) bytes) trimmed.*/\1/p' "$WORK/fstrim.out")"
    else
        fail fstrim "$(cat "$WORK/fstrim.out")"
    fi
    check umount umount "$MNT"
    check fsck_clean "$E2FSCK" -fn "$DEV"
fi

finish
