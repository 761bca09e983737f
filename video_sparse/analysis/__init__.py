"""Cost analysis: FLOPs, throughput and memory benchmarks, kept-token pictures."""
