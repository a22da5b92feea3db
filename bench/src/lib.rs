//! The parts of the benchmarks shared by the load generator `isnad-bench` and the criterion
//! benchmarks in `benches/`.

pub mod synthetic;
