//! Brook benchmarks. The criterion micro-benchmarks live in `benches/`; the `brook-bench`
//! binary that runs the same workload against Brook and a real Kafka joins with its issue.
