//! One wasmtime engine per process: compiles validator modules and ticks the epoch for deadlines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, StoreContextMut};

use crate::config::{Profiler, WasmConfig};
use crate::error::{Error, Result};
use crate::sandbox::ModuleInfo;
use crate::sandbox::bindings::{Level, ValidatorPre};
use crate::sandbox::cache::{self, CacheStatus};
use crate::sandbox::imports;
use crate::sandbox::instance::{GuestState, LOG_LINE_MAX_BYTES, ValidatorInstance, WIT_VERSION};
use crate::sandbox::lift::Text;

/// How often the engine's epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide engine and the sandbox limits every instance gets.
///
/// Built once at the edge (a CLI command, the benchmark) and handed to whatever loads modules:
/// a clone is a cheap handle to the same engine, ticker and instance count. Each engine has its
/// own epoch ticker thread, which ends once the last handle (and every module and instance
/// built from it) is dropped.
#[derive(Clone)]
pub struct GuestEngine {
    engine: Engine,
    limits: Arc<WasmConfig>,
    /// Validator instances alive in the process, at most `limits.max_instances`.
    live: Arc<AtomicUsize>,
}

impl GuestEngine {
    /// Builds the engine with epoch interruption on and starts its ticker thread. Call it once
    /// per process and clone the result.
    pub fn new(limits: &WasmConfig) -> Result<Self> {
        let mut config = Config::new();
        // Deadlines by epoch cost far less per call than fuel metering.
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.profiler(match limits.profiler {
            Profiler::None => wasmtime::ProfilingStrategy::None,
            Profiler::PerfMap => wasmtime::ProfilingStrategy::PerfMap,
            Profiler::JitDump => wasmtime::ProfilingStrategy::JitDump,
        });
        let engine = Engine::new(&config).map_err(|e| Error::Guest {
            module: PathBuf::from("<engine>"),
            message: format!("cannot create the wasmtime engine: {e}"),
        })?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("k2-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| Error::Io { context: "starting the epoch ticker thread".into(), source: e })?;
        Ok(Self { engine, limits: Arc::new(limits.clone()), live: Arc::new(AtomicUsize::new(0)) })
    }

    /// Compiles (or takes from the cache) and pre-links the component at `path`.
    pub fn load(&self, path: &Path) -> Result<ValidatorModule> {
        self.load_pinned(path, None)
    }

    /// Like [`GuestEngine::load`], refusing the file unless its sha256 is `pin` (hex).
    pub fn load_pinned(&self, path: &Path, pin: Option<&str>) -> Result<ValidatorModule> {
        let err = |message: String| Error::Guest { module: path.to_path_buf(), message };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let sha256 = cache::sha256_hex(&bytes);
        if let Some(pin) = pin
            && !pin.eq_ignore_ascii_case(&sha256)
        {
            return Err(err(format!("sha256 is {sha256}, but the config pins {pin}; refusing to load it")));
        }
        if !is_component_binary(&bytes) {
            return Err(err(
                "not a webassembly component (a core module or another file); build the validator for wasm32-wasip2"
                    .into(),
            ));
        }
        let cache_dir =
            if self.limits.cache { self.limits.cache_dir.clone().or_else(cache::default_dir) } else { None };
        let (component, cache_status) = cache::load_or_compile(cache_dir.as_deref(), &self.engine, &sha256, || {
            Component::new(&self.engine, &bytes)
        })
        .map_err(|e| err(format!("cannot compile: {e:#}")))?;
        let mut linker: Linker<GuestState> = Linker::new(&self.engine);
        link_host(&mut linker).map_err(|e| err(format!("cannot link the host interface: {e:#}")))?;
        imports::link(&mut linker, &self.engine, &component).map_err(|e| err(format!("cannot link wasi: {e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| err(format!("does not fit the k2:ingest@{WIT_VERSION} validator world: {e:#}")))?;
        let pre = ValidatorPre::new(pre)
            .map_err(|e| err(format!("does not export k2:ingest/validation@{WIT_VERSION}: {e:#}")))?;
        let imports = component.component_type().imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        Ok(ValidatorModule { path: path.to_path_buf(), pre, engine: self.clone(), imports, sha256, cache_status })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn limits(&self) -> &WasmConfig {
        &self.limits
    }

    pub(crate) fn live_instances(&self) -> &Arc<AtomicUsize> {
        &self.live
    }
}

/// The `k2:ingest/host` interface: `log`, whose message the host reads at most
/// [`LOG_LINE_MAX_BYTES`] of (the generated bindings would copy all of it first), and the
/// `types` interface, which has no functions.
fn link_host(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.instance(&format!("k2:ingest/types@{WIT_VERSION}"))?;
    linker.instance(&format!("k2:ingest/host@{WIT_VERSION}"))?.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, GuestState>, (level, message): (Level, Text<LOG_LINE_MAX_BYTES>)| {
            store.data_mut().log(level, &message.0);
            Ok(())
        },
    )
}

/// A component's 8-byte preamble: magic `\0asm`, then version 0x0d and layer 1.
fn is_component_binary(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[6..8] == [1, 0]
}

/// A compiled, pre-linked validator component, ready to instantiate per topic-partition.
#[derive(Clone)]
pub struct ValidatorModule {
    path: PathBuf,
    pre: ValidatorPre<GuestState>,
    engine: GuestEngine,
    imports: Vec<String>,
    sha256: String,
    cache_status: CacheStatus,
}

impl ValidatorModule {
    /// Hex sha256 of the component file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether the compiled code came from the cache.
    pub fn cache_status(&self) -> CacheStatus {
        self.cache_status
    }

    /// The interfaces the component imports (WASI through std, and the host's log).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Name and versions the module reports, from a throwaway instance.
    pub fn info(&self) -> Result<ModuleInfo> {
        crate::sandbox::instance::info(&self.engine, &self.pre, &self.path)
    }

    /// The sandbox limits and restart backoff of the engine that loaded this module.
    pub fn limits(&self) -> &WasmConfig {
        self.engine.limits()
    }

    /// A fresh instance in its own store, built with `settings`.
    pub fn instantiate(&self, settings: &[(String, String)]) -> Result<ValidatorInstance> {
        ValidatorInstance::new(&self.engine, &self.pre, &self.path, settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticker_lets_go_of_the_engine_when_the_last_handle_drops() {
        let engine = GuestEngine::new(&WasmConfig::default()).unwrap();
        let handle = engine.clone();
        let weak = engine.engine().weak();
        drop(engine);
        std::thread::sleep(EPOCH_TICK * 3);
        assert!(weak.upgrade().is_some(), "a clone still holds the engine");
        drop(handle);
        // The ticker holds the engine only while it ticks, so it is gone within a tick or two.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while weak.upgrade().is_some() {
            assert!(std::time::Instant::now() < deadline, "the engine outlived its last handle");
            std::thread::sleep(EPOCH_TICK);
        }
    }
}
