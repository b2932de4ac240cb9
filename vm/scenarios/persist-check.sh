# Scenario persist-check: the second half of a persistence check (see persist-write): the
# filesystem written by an earlier guest, through an earlier server, is clean and every file
# matches the checksum stored beside it.
#
# Results: fsck_clean, mount, files_intact, umount (each ok|FAIL), files (count). Arguments: none.
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

MNT=/mnt/fs
mkdir -p "$MNT"
check fsck_clean "$E2FSCK" -fn "$DEV"
check mount mount -t ext4 "$DEV" "$MNT"
mounted "$MNT" || finish
result files "$(wc -l <"$MNT/SHA256SUMS")"
check files_intact sh -c "cd '$MNT/data' && sha256sum -c -s '$MNT/SHA256SUMS'"
check umount umount "$MNT"
finish
