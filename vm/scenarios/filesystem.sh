# Scenario filesystem: ext4 on the disk survives umount, a forced fsck and a remount with every
# file intact.
#
# mkfs.ext4 (which also discards the disk), files of 4 KiB to 8 MiB plus a tree of 100 small
# files, umount, `e2fsck -fn` must find nothing, mount again and compare sha256 of every file,
# delete half of them, umount and fsck again.
# Results: mkfs, mount, write, umount, fsck_clean, remount, files_intact, delete, umount2,
# fsck_clean2 (each ok|FAIL), files (count). Arguments: none.
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

MNT=/mnt/fs
mkdir -p "$MNT"

check mkfs "$MKE2FS" -t ext4 -F -q "$DEV"
check mount mount -t ext4 "$DEV" "$MNT"
mounted "$MNT" || finish

# write_files: the test data set, scaled down on disks under 64 MiB.
write_files() {
    local big=8388608 i
    [ "$(disk_bytes)" -ge 67108864 ] || big=1048576
    mkdir -p "$MNT/tree/sub" || return 1
    for size in 4096 102400 1048576 "$big"; do
        random_file "$WORK/f" "$size" && cp "$WORK/f" "$MNT/file-$size" || return 1
    done
    i=1
    while [ "$i" -le 100 ]; do
        head -c $((i * 97)) /dev/urandom >"$MNT/tree/sub/small-$i" || return 1
        i=$((i + 1))
    done
    sync
}
check write write_files
(cd "$MNT" && find . -type f | sort | xargs sha256sum) >"$WORK/sums"
result files "$(wc -l <"$WORK/sums")"

check umount umount "$MNT"
check fsck_clean "$E2FSCK" -fn "$DEV"
drop_caches
check remount mount -t ext4 "$DEV" "$MNT"
check files_intact sh -c "cd '$MNT' && sha256sum -c -s '$WORK/sums'"
check delete sh -c "rm -f '$MNT'/file-* '$MNT'/tree/sub/small-*[02468] && sync"
check umount2 umount "$MNT"
check fsck_clean2 "$E2FSCK" -fn "$DEV"

finish
