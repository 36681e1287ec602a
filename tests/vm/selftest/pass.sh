# Self-test of the harness: a scenario that passes, with a figure.
figure answer 42
