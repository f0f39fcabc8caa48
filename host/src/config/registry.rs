//! The `[registry]` section: a Confluent-compatible schema registry for Confluent-framed topics.

use std::fmt;

use serde::Deserialize;

use super::redact_url;

/// Environment variables that override the registry section, for CI, containers and secrets.
pub const ENV_REGISTRY_URL: &str = "K2_REGISTRY_URL";
pub const ENV_REGISTRY_PASSWORD: &str = "K2_REGISTRY_PASSWORD";
pub const ENV_REGISTRY_TOKEN: &str = "K2_REGISTRY_TOKEN";

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of the Confluent REST API, the part before `/schemas/ids/{id}`: e.g.
    /// `http://registry:8081` (Confluent, Redpanda, Karapace) or
    /// `http://apicurio:8080/apis/ccompat/v7` (Apicurio). Env override: `K2_REGISTRY_URL`.
    pub url: String,
    /// User for HTTP basic auth (Confluent Cloud: the API key). Default: none.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for basic auth (Confluent Cloud: the API secret). Env override:
    /// `K2_REGISTRY_PASSWORD`. Default: none.
    #[serde(default)]
    pub password: Option<String>,
    /// A bearer token sent as `Authorization: Bearer …`, instead of basic auth. Env override:
    /// `K2_REGISTRY_TOKEN`. Default: none.
    #[serde(default)]
    pub token: Option<String>,
    /// Longest wait for one registry request, in milliseconds. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most schemas kept in memory, by id; a schema is fetched once and kept until pushed out
    /// by newer ones. Default 1000; at least 1.
    #[serde(default = "default_cache_schemas")]
    pub cache_schemas: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_cache_schemas() -> u64 {
    1000
}

// Secrets stay out of debug output (error reports, `--log` at debug level).
impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .field("cache_schemas", &self.cache_schemas)
            .finish()
    }
}

impl RegistryConfig {
    pub(super) fn resolve(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if let Some(v) = env(ENV_REGISTRY_URL) {
            self.url = v;
        }
        if let Some(v) = env(ENV_REGISTRY_PASSWORD) {
            self.password = Some(v);
        }
        if let Some(v) = env(ENV_REGISTRY_TOKEN) {
            self.token = Some(v);
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("registry.url `{}` must start with http:// or https://", redact_url(url)));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("registry.password is set but registry.username is not".into());
        }
        if self.token.is_some() && self.username.is_some() {
            return Err("registry: set either username/password or token, not both".into());
        }
        if self.cache_schemas == 0 {
            return Err("registry.cache_schemas must be at least 1".into());
        }
        Ok(())
    }
}
