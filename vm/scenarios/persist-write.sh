# Scenario persist-write: the first half of a persistence check across a server restart. Makes an
# ext4, writes files, stores their checksums on the filesystem itself, syncs and unmounts cleanly.
# persist-check, run by a later guest on the same image, verifies them.
#
# Results: mkfs, mount, write, sums, umount (each ok|FAIL), files (count). Arguments: none.
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

MNT=/mnt/fs
mkdir -p "$MNT"
check mkfs "$MKE2FS" -t ext4 -F -q "$DEV"
check mount mount -t ext4 "$DEV" "$MNT"
mounted "$MNT" || finish

write_files() {
    local size
    mkdir -p "$MNT/data" || return 1
    for size in 4096 65536 1048576 4194304; do
        random_file "$MNT/data/file-$size" "$size" || return 1
    done
    for size in 97 1000 5000 12345; do
        head -c "$size" /dev/urandom >"$MNT/data/small-$size" || return 1
    done
    sync
}
check write write_files
check sums sh -c "cd '$MNT/data' && sha256sum * >'$MNT/SHA256SUMS' && sync"
result files "$(wc -l <"$MNT/SHA256SUMS")"
check umount umount "$MNT"
finish
