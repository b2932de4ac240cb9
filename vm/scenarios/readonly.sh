# Scenario readonly: a disk exported read-only (VIRTIO_BLK_F_RO) is read-only in the guest,
# refuses writes and discards, and reads work and see unchanged data.
#
# Results: ro (value), ro_flag, read, write_rejected, discard_rejected, zeroout_rejected,
# unchanged, read_all (each ok|FAIL). Arguments: none.
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

ro=$(sysfs ro)
result ro "$ro"
expect_eq ro_flag "$ro" 1

if before=$(read_sum 0 1048576 direct); then pass read; else fail read "direct read of 1 MiB failed"; fi
random_file "$WORK/w" 65536
check_fails write_rejected write_at "$WORK/w" 0
check_fails discard_rejected "$BLKDISCARD" -f -o 0 -l 65536 "$DEV"
check_fails zeroout_rejected "$BLKDISCARD" -f -z -o 0 -l 65536 "$DEV"
drop_caches
after=$(read_sum 0 1048576 direct) || after=read-error
expect_eq unchanged "$after" "$before"
check read_all dd if="$DEV" of=/dev/null bs=1048576 iflag=direct

finish
