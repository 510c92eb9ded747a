//! Nothing here: the benchmarks are the `[[bench]]` targets in `benches/`
//! (`cargo bench -p tetherdb-bench --bench local`, `etcd`, `dynamodb`). A
//! package needs a library or a binary besides them.
