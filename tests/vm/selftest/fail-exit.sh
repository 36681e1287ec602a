# Self-test of the harness: a scenario that exits non-zero must fail the run.
echo "about to exit 3"
exit 3
