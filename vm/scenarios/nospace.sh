# Scenario nospace: the host's storage fills up under the guest (a sparse image on a small
# tmpfs). Writes that need new space must fail with an I/O error in the guest (not succeed
# silently), while writes to space already allocated and reads keep working.
#
# Results: first_write, overflow_rejected, rewrite, read_back (each ok|FAIL). Arguments: none.
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

MIB=1048576
random_file "$WORK/a" $((4 * MIB))
check first_write write_at "$WORK/a" 0 "$MIB"
random_file "$WORK/big" $((32 * MIB))
check_fails overflow_rejected write_at "$WORK/big" $((8 * MIB)) "$MIB"
rm -f "$WORK/big"
random_file "$WORK/b" $((4 * MIB))
check rewrite write_at "$WORK/b" 0 "$MIB"
drop_caches
got=$(read_sum 0 $((4 * MIB)) direct) || got=read-error
expect_eq read_back "$got" "$(sum_file "$WORK/b")"
finish
