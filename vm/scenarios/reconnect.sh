# Scenario reconnect: the guest keeps its disk while the backend restarts (QEMU with
# `-chardev socket,...,reconnect=1`). Writes random data with O_DIRECT, reports `phase=written`
# and then waits for the host (the test) to stop and restart the server; reads issued meanwhile
# wait in the ring until the new server picks them up. The data must read back intact, and the
# disk must take new writes afterwards.
#
# Results: phase (written), written_sum, read_after_restart, write_after_restart (each ok|FAIL).
# Arguments: wait (seconds to wait before reading, default 6).
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

random_file "$WORK/data" 1048576
check write write_at "$WORK/data" 1048576
want=$(sum_file "$WORK/data")
result written_sum "$want"
result phase written
sleep "$(arg wait 6)"
got=$(read_sum 1048576 1048576 direct) || got=read-error
expect_eq read_after_restart "$got" "$want"
random_file "$WORK/more" 65536
check write_after_restart write_at "$WORK/more" 4194304
finish
