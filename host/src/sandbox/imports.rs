//! What a guest may import: the host's log and a few deterministic WASI pieces; every other WASI import traps, naming itself.
//!
//! Rust's wasip2 std imports most of WASI whether a validator uses it or not, so the host must
//! satisfy those imports. wasmtime-wasi's full linker would hand the guest the host's clocks,
//! random bytes and a `poll` that blocks the host thread outside the epoch deadline (a
//! `std::thread::sleep` hung the host). Instead each import is either one of the few below,
//! which can neither block nor observe the host, or a stub that traps with [`DeniedImport`].

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, Linker, Resource, ResourceTable, ResourceType, WasmList};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::p2::bindings::sync as wasi;
use wasmtime_wasi::p2::bindings::sync::io::streams::StreamError;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError};
use wasmtime_wasi::random::WasiRandom;

use crate::sandbox::instance::GuestState;

/// The WASI interfaces a guest gets, by name without version: stdout and stderr discard what
/// is written; the environment and arguments are empty; the hash seed std asks for is a fixed
/// number (so a validator's `HashMap` iterates the same way on every replay); and the stream,
/// pollable and error types they need. A stream of those is always ready, so `poll` cannot wait:
/// that holds only while stdin and the clocks stay denied, the two sources of pollables that
/// are not.
const GRANTED: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/environment",
    "wasi:random/insecure-seed",
];

/// The seed behind `wasi:random/insecure-seed`: any fixed number does; this one spells `k2`.
pub(crate) const HASH_SEED: u128 = 0x6b32;

/// A guest called a WASI function the sandbox does not grant.
#[derive(Debug, thiserror::Error)]
#[error(
    "called `{import}`, which the sandbox denies (a validator gets no clocks, random bytes, files, sockets, \
     stdin or exit; the batch carries now-micros)"
)]
pub struct DeniedImport {
    pub import: String,
}

/// Resources of denied interfaces: a guest can never obtain one, since every function that
/// would hand one out traps.
struct Denied;

/// Store data the stream and pollable interfaces need: the instance's resource table.
struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds the granted WASI interfaces to `linker`, then a trapping stub for every other WASI
/// function and resource `component` imports. Imports outside WASI are left undefined, so a
/// component built for another world is refused when it is linked.
pub(crate) fn link(linker: &mut Linker<GuestState>, engine: &Engine, component: &Component) -> wasmtime::Result<()> {
    wasi::io::error::add_to_linker::<GuestState, Table>(linker, |s| s.table())?;
    wasi::io::poll::add_to_linker::<GuestState, Table>(linker, |s| s.table())?;
    wasi::io::streams::add_to_linker::<GuestState, Table>(linker, |s| s.table())?;
    wasi::cli::stdout::add_to_linker::<GuestState, WasiCli>(linker, GuestState::cli)?;
    wasi::cli::stderr::add_to_linker::<GuestState, WasiCli>(linker, GuestState::cli)?;
    wasi::cli::environment::add_to_linker::<GuestState, WasiCli>(linker, GuestState::cli)?;
    wasi::random::insecure_seed::add_to_linker::<GuestState, WasiRandom>(linker, |s| s.wasi().random())?;
    discard_writes(linker)?;

    // A denied interface may name a granted one's resource (a clock hands out `pollable`s):
    // that resource must keep the type wasmtime-wasi gave it, or the import does not link.
    let component_type = component.component_type();
    let mut shared: Vec<(ResourceType, ResourceType)> = Vec::new();
    for (name, import) in component_type.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = import.ty else { continue };
        for (item, ty) in instance.exports(engine) {
            if let (ComponentItem::Resource(seen), Some(host)) = (ty.ty, granted_resource(name, item)) {
                shared.push((seen, host));
            }
        }
    }
    for (name, import) in component_type.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = import.ty else { continue };
        if !name.starts_with("wasi:") || is_granted(name) {
            continue;
        }
        let mut stub = linker.instance(name)?;
        for (item, ty) in instance.exports(engine) {
            match ty.ty {
                ComponentItem::ComponentFunc(_) => {
                    let import = format!("{name}#{item}");
                    stub.func_new(item, move |_, _, _, _| Err(DeniedImport { import: import.clone() }.into()))?;
                }
                ComponentItem::Resource(seen) => {
                    let host = shared.iter().find(|(s, _)| *s == seen).map_or(ResourceType::host::<Denied>(), |p| p.1);
                    stub.resource(item, host, |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The host type wasmtime-wasi gives resource `item` of a granted interface `import`.
fn granted_resource(import: &str, item: &str) -> Option<ResourceType> {
    match (unversioned(import), item) {
        ("wasi:io/poll", "pollable") => Some(ResourceType::host::<DynPollable>()),
        ("wasi:io/streams", "input-stream") => Some(ResourceType::host::<DynInputStream>()),
        ("wasi:io/streams", "output-stream") => Some(ResourceType::host::<DynOutputStream>()),
        ("wasi:io/error", "error") => Some(ResourceType::host::<IoError>()),
        _ => None,
    }
}

/// The version of WASI wasmtime-wasi links its interfaces under; guests built against any
/// 0.2.x resolve to it. Named here to replace two of its functions.
const WASI_VERSION: &str = "0.2.12";

/// Replaces the two stream writes that take a `list<u8>`: wasmtime-wasi's copy the whole list
/// into the host before anything looks at it (up to the guest's whole memory per call), only
/// to discard it, since stdout and stderr are sinks. These read nothing of the list.
fn discard_writes(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut streams = linker.instance(&format!("wasi:io/streams@{WASI_VERSION}"))?;
    for method in ["[method]output-stream.write", "[method]output-stream.blocking-write-and-flush"] {
        streams.func_wrap(method, |_, (_stream, _bytes): (Resource<DynOutputStream>, WasmList<u8>)| {
            Ok((Ok::<(), StreamError>(()),))
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Whether `import` (e.g. `wasi:io/streams@0.2.6`) is one of [`GRANTED`], in any version.
fn is_granted(import: &str) -> bool {
    GRANTED.contains(&unversioned(import))
}

fn unversioned(import: &str) -> &str {
    import.split_once('@').map_or(import, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_interfaces_match_in_any_version_and_nothing_else_does() {
        assert!(is_granted("wasi:io/streams@0.2.6"));
        assert!(is_granted("wasi:random/insecure-seed@0.2.4"));
        assert!(is_granted("wasi:cli/stderr"));
        for denied in [
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:clocks/monotonic-clock@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:random/insecure@0.2.6",
            "wasi:cli/stdin@0.2.6",
            "wasi:cli/exit@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:io/streamsx@0.2.6",
        ] {
            assert!(!is_granted(denied), "{denied}");
        }
    }
}
