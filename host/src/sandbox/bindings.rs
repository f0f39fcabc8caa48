//! Generated bindings for the `k2:ingest` WIT world; private to the guest module.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "validator",
    // Batches go to the guest as borrowed slices of our Arrow buffers: the lowering copies
    // them into guest memory once, with no owned copy built first.
    ownership: Borrowing { duplicate_if_necessary: false },
});

pub use k2::ingest::host::Level;
pub use k2::ingest::types as wit;
