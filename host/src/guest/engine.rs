//! One wasmtime engine per process: compiles validator modules and ticks the epoch for deadlines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::config::WasmConfig;
use crate::error::{Error, Result};
use crate::guest::ModuleInfo;
use crate::guest::bindings::{Validator as ValidatorWorld, ValidatorPre};
use crate::guest::cache::{self, CacheStatus};
use crate::guest::instance::{GuestState, ValidatorInstance};

/// How often the engine's epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide engine and the sandbox limits every instance gets.
#[derive(Clone)]
pub struct GuestEngine {
    engine: Engine,
    limits: Arc<WasmConfig>,
}

impl GuestEngine {
    /// Builds the engine with epoch interruption on and starts its ticker thread.
    pub fn new(limits: &WasmConfig) -> Result<Self> {
        let mut config = Config::new();
        // Deadlines by epoch cost far less per call than fuel metering.
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Lets `perf` name guest functions (it reads /tmp/perf-PID.map); `jitdump` instead writes
        // the machine code too, for `perf inject --jit` and `perf annotate`. For profiling validators.
        match std::env::var("K2_WASM_PERFMAP").as_deref() {
            Ok("jitdump") => {
                config.profiler(wasmtime::ProfilingStrategy::JitDump);
            }
            Ok(_) => {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            Err(_) => {}
        }
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
        Ok(Self { engine, limits: Arc::new(limits.clone()) })
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
        // Rust's wasip2 std imports WASI interfaces; the context behind them grants nothing.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| err(format!("cannot link wasi: {e:#}")))?;
        ValidatorWorld::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| err(format!("cannot link the host interface: {e:#}")))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            err(format!("does not fit the k2:ingest@{} validator world: {e:#}", crate::guest::instance::WIT_VERSION))
        })?;
        let pre = ValidatorPre::new(pre).map_err(|e| {
            err(format!("does not export k2:ingest/validation@{}: {e:#}", crate::guest::instance::WIT_VERSION))
        })?;
        let imports = component.component_type().imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        Ok(ValidatorModule { path: path.to_path_buf(), pre, engine: self.clone(), imports, sha256, cache_status })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn limits(&self) -> &WasmConfig {
        &self.limits
    }
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
        let (_, _, info) = crate::guest::instance::start(&self.engine, &self.pre, &self.path)?;
        Ok(ModuleInfo { name: info.name, version: info.version, wit_version: info.wit_version })
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
