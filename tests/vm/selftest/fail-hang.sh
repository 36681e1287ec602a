# Self-test of the harness: a guest that never finishes must fail the run on its timeout.
# vm-timeout-s: 15
sleep 100000
