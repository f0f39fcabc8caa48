//! Generated bindings for the `k2:ingest` WIT world; private to the guest module.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "validator",
});

pub use k2::ingest::host::{Host, Level};
pub use k2::ingest::types as wit;
