# Self-test of the harness: a guest kernel panic must fail the run, even though QEMU
# exits 0 (panic=-1 with -no-reboot).
echo 1 >/proc/sys/kernel/sysrq
echo c >/proc/sysrq-trigger
sleep 30
