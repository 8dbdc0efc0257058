//! The node's integration tests: real nodes on `127.0.0.1:0` in temporary directories, real
//! HTTP, and real Python peers. One test binary; each area is a module under `it/`.

mod it;
