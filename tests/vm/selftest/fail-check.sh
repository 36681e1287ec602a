# Self-test of the harness: a failed check must fail the run and say which check and why.
figure before_the_check 1
expect_eq 1 2 "one plus nothing"
