//! The `[catalog]` section: the embedded SQL catalog, or an Iceberg REST catalog over object storage.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::redact_url;

/// Environment variables that override the catalog section, for CI, containers and secrets.
pub const ENV_CATALOG_DATABASE: &str = "K2_CATALOG_DATABASE";
pub const ENV_WAREHOUSE: &str = "K2_WAREHOUSE";
pub const ENV_CATALOG_URI: &str = "K2_CATALOG_URI";
pub const ENV_CATALOG_CREDENTIAL: &str = "K2_CATALOG_CREDENTIAL";
pub const ENV_CATALOG_TOKEN: &str = "K2_CATALOG_TOKEN";

// Parsed once per process: the size of the REST variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum CatalogConfig {
    /// The embedded catalog: iceberg-rust's SQL catalog on a SQLite file, data on local disk.
    Sql(SqlCatalogConfig),
    /// An Iceberg REST catalog (Polaris, Nessie, Lakekeeper, Glue, Unity, Apache Iceberg's
    /// reference server), data on the storage its warehouse names (S3-compatible or local).
    Rest(RestCatalogConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlCatalogConfig {
    /// Catalog name, shared by every reader of the same database. Default `k2`.
    #[serde(default = "default_catalog_name")]
    pub name: String,
    /// SQLite database file (created if missing). Relative paths are relative to the
    /// config file. Env override: `K2_CATALOG_DATABASE`.
    pub database: PathBuf,
    /// Warehouse directory for table data and metadata (created if missing). Relative
    /// paths are relative to the config file. Env override: `K2_WAREHOUSE`.
    pub warehouse: PathBuf,
    /// Namespace of the tables. Default `market`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestCatalogConfig {
    /// Name k2-ingest's logs and errors give the catalog. Default `k2`.
    #[serde(default = "default_catalog_name")]
    pub name: String,
    /// Base URI of the catalog's REST API, without `/v1` (e.g. `https://polaris:8181/api/catalog`).
    /// Env override: `K2_CATALOG_URI`.
    pub uri: String,
    /// Warehouse to ask the server for: a name (Polaris, Lakekeeper) or a location
    /// (`s3://bucket/path`). Default: none, the server's own default.
    #[serde(default)]
    pub warehouse: Option<String>,
    /// Namespace of the tables (created if missing). Default `market`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// OAuth2 client credentials, `client_id:client_secret`, exchanged for a token at
    /// `oauth2_server_uri` and refreshed by the client. Env override: `K2_CATALOG_CREDENTIAL`.
    /// Default: none.
    #[serde(default)]
    pub credential: Option<String>,
    /// A bearer token sent as is (when the platform issues tokens itself). Env override:
    /// `K2_CATALOG_TOKEN`. Default: none. With `credential` also set, the token is used first.
    #[serde(default)]
    pub token: Option<String>,
    /// Token endpoint for `credential`. Default: the catalog's own `<uri>/v1/oauth/tokens`.
    #[serde(default)]
    pub oauth2_server_uri: Option<String>,
    /// OAuth2 scope asked for with `credential`. Default `catalog`.
    #[serde(default)]
    pub scope: Option<String>,
    /// Longest wait for one request to the catalog (connecting, sending, the whole answer),
    /// in milliseconds. A catalog that hangs then fails the call by name, instead of holding
    /// the process until it is killed; the run stops and reads its uncommitted records again
    /// on restart. Default 30000.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Object storage settings for data and metadata files on S3-compatible stores.
    #[serde(default)]
    pub s3: S3Config,
    /// Extra properties passed as is to the REST client and to file IO, after the ones
    /// above, e.g. `"header.X-Iceberg-Access-Delegation" = "vended-credentials"` or
    /// `"s3.sse.type" = "s3"`. Default: none.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Any field left out falls back to the AWS defaults: credentials from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, the profile files or instance metadata;
/// region from `AWS_REGION`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible store (MinIO, Ceph, S3Proxy, R2), e.g. `http://minio:9000`.
    /// Default: AWS S3 for the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region of the bucket. Default: from the environment; most non-AWS stores accept `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`. Most self-hosted
    /// stores need `true`. Default `false`, as in Iceberg's Java S3FileIO.
    #[serde(default)]
    pub path_style_access: Option<bool>,
    /// Access key id. Default: from the environment (see above).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key. Default: from the environment (see above).
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials. Default: none.
    #[serde(default)]
    pub session_token: Option<String>,
}

// Secrets stay out of debug output (error reports, `--log` at debug level).
impl fmt::Debug for RestCatalogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestCatalogConfig")
            .field("name", &self.name)
            .field("uri", &redact_url(&self.uri))
            .field("warehouse", &self.warehouse)
            .field("namespace", &self.namespace)
            .field("credential", &self.credential.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("oauth2_server_uri", &self.oauth2_server_uri.as_deref().map(redact_url))
            .field("scope", &self.scope)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("s3", &self.s3)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("region", &self.region)
            .field("path_style_access", &self.path_style_access)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl CatalogConfig {
    pub fn name(&self) -> &str {
        match self {
            CatalogConfig::Sql(c) => &c.name,
            CatalogConfig::Rest(c) => &c.name,
        }
    }

    pub fn namespace(&self) -> &str {
        match self {
            CatalogConfig::Sql(c) => &c.namespace,
            CatalogConfig::Rest(c) => &c.namespace,
        }
    }

    /// Applies the environment overrides and makes local paths absolute against `base`.
    pub(super) fn resolve(&mut self, base: &Path, env: &impl Fn(&str) -> Option<String>) {
        match self {
            CatalogConfig::Sql(sql) => {
                if let Some(v) = env(ENV_CATALOG_DATABASE) {
                    sql.database = v.into();
                }
                if let Some(v) = env(ENV_WAREHOUSE) {
                    sql.warehouse = v.into();
                }
                sql.database = base.join(&sql.database);
                sql.warehouse = base.join(&sql.warehouse);
            }
            CatalogConfig::Rest(rest) => {
                if let Some(v) = env(ENV_CATALOG_URI) {
                    rest.uri = v;
                }
                if let Some(v) = env(ENV_CATALOG_CREDENTIAL) {
                    rest.credential = Some(v);
                }
                if let Some(v) = env(ENV_CATALOG_TOKEN) {
                    rest.token = Some(v);
                }
            }
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.namespace().is_empty() {
            return Err("catalog.namespace is empty".into());
        }
        let CatalogConfig::Rest(rest) = self else { return Ok(()) };
        if !(rest.uri.starts_with("http://") || rest.uri.starts_with("https://")) {
            return Err(format!("catalog.uri `{}` is not an http:// or https:// address", redact_url(&rest.uri)));
        }
        if let Some(c) = &rest.credential
            && !c.contains(':')
        {
            return Err("catalog.credential must be `client_id:client_secret`".into());
        }
        if rest.s3.access_key_id.is_some() != rest.s3.secret_access_key.is_some() {
            return Err("catalog.s3.access_key_id and catalog.s3.secret_access_key go together".into());
        }
        Ok(())
    }
}

impl RestCatalogConfig {
    /// The properties handed to iceberg-rust's REST catalog, which also passes them to the
    /// file IO of every table it loads (so the S3 settings reach the data files).
    pub fn properties(&self) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        let mut put = |k: &str, v: Option<&String>| {
            if let Some(v) = v {
                props.insert(k.to_string(), v.clone());
            }
        };
        put("uri", Some(&self.uri));
        put("warehouse", self.warehouse.as_ref());
        put("credential", self.credential.as_ref());
        put("token", self.token.as_ref());
        put("oauth2-server-uri", self.oauth2_server_uri.as_ref());
        put("scope", self.scope.as_ref());
        put("s3.endpoint", self.s3.endpoint.as_ref());
        put("s3.region", self.s3.region.as_ref());
        put("s3.path-style-access", self.s3.path_style_access.map(|b| b.to_string()).as_ref());
        put("s3.access-key-id", self.s3.access_key_id.as_ref());
        put("s3.secret-access-key", self.s3.secret_access_key.as_ref());
        put("s3.session-token", self.s3.session_token.as_ref());
        props.extend(self.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        props
    }
}

pub(super) fn default_catalog_name() -> String {
    "k2".into()
}

pub(super) fn default_namespace() -> String {
    "market".into()
}

fn default_request_timeout_ms() -> u64 {
    30_000
}
