"""linflow's benchmark suite: `python -m benchmarks [--quick] [--out PATH] [--only WORKLOAD]`."""
