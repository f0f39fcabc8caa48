//! The files under one of a table's folders, with their size and age: what the orphan sweep holds against the metadata.
//!
//! iceberg-rust's FileIO reads, writes and deletes but does not list, so the folder is listed
//! with opendal (the library FileIO itself runs on), configured from the same storage
//! properties the table's FileIO was given.

use std::collections::HashMap;

use futures::TryStreamExt;
use iceberg::io::{
    CLIENT_REGION, S3_ACCESS_KEY_ID, S3_ALLOW_ANONYMOUS, S3_ASSUME_ROLE_ARN, S3_DISABLE_CONFIG_LOAD,
    S3_DISABLE_EC2_METADATA, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN,
};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::services::{FsConfig, S3Config};
use opendal::{ErrorKind, Operator};

/// An S3 request (one page of a listing, one stat) that takes longer fails, and is tried again
/// a few times: a stalled object store must not hold the consume loop that sweeps. S3 only: a
/// page is retried whole there, while a local recursive listing retried mid-way would go on
/// without the folder it was opening (a partial listing taken for a complete one).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

use crate::error::{Error, Result};

/// One listed file, named in the form of the folder it was listed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub bytes: u64,
    /// Last modified (Unix ms), if the store says.
    pub modified_ms: Option<i64>,
}

/// Every file under `dir` (`file:/…`, `/…` or `s3://bucket/…`, also `s3a`/`s3n`), read with
/// `props`, the storage properties of the table's FileIO. A folder that does not exist has
/// no files.
pub async fn list(dir: &str, props: &HashMap<String, String>) -> Result<Vec<Listed>> {
    let dir = format!("{}/", dir.trim_end_matches('/'));
    let err = |source| Error::Listing { path: dir.clone(), source: Box::new(source) };
    let (op, prefix, relative) = operator(&dir, props).map_err(err)?;
    let mut lister = match op.lister_with(&relative).recursive(true).await {
        Ok(lister) => lister,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(e)),
    };
    let mut files = Vec::new();
    while let Some(entry) = lister.try_next().await.map_err(err)? {
        if !entry.metadata().is_file() {
            continue;
        }
        // A store whose listing gives no age (some S3-compatible ones) needs a stat.
        let meta = if entry.metadata().last_modified().is_none() {
            match op.stat(entry.path()).await {
                Ok(meta) => meta,
                // Deleted since it was listed: not a file to sweep.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(err(e)),
            }
        } else {
            entry.metadata().clone()
        };
        files.push(Listed {
            path: format!("{prefix}{}", entry.path()),
            bytes: meta.content_length(),
            modified_ms: meta.last_modified().map(|t| t.into_inner().as_millisecond()),
        });
    }
    Ok(files)
}

/// The operator for `dir`, the prefix that turns its entries' paths back into full paths, and
/// `dir` relative to the operator's root.
fn operator(dir: &str, props: &HashMap<String, String>) -> opendal::Result<(Operator, String, String)> {
    let unsupported = |what: String| opendal::Error::new(ErrorKind::Unsupported, what);
    if let Some((scheme, rest)) = dir.split_once("://")
        && matches!(scheme, "s3" | "s3a" | "s3n")
    {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if props.contains_key(S3_ASSUME_ROLE_ARN) {
            return Err(unsupported(format!(
                "{S3_ASSUME_ROLE_ARN} is set: listing with an assumed role is not supported"
            )));
        }
        let truthy =
            |key: &str| props.get(key).is_some_and(|v| matches!(v.to_lowercase().as_str(), "true" | "t" | "1" | "on"));
        let mut cfg = S3Config::default();
        cfg.bucket = bucket.to_string();
        cfg.root = Some("/".into());
        cfg.endpoint = props.get(S3_ENDPOINT).cloned();
        cfg.region = props.get(CLIENT_REGION).or_else(|| props.get(S3_REGION)).cloned();
        cfg.access_key_id = props.get(S3_ACCESS_KEY_ID).cloned();
        cfg.secret_access_key = props.get(S3_SECRET_ACCESS_KEY).cloned();
        cfg.session_token = props.get(S3_SESSION_TOKEN).cloned();
        // Iceberg's default is virtual-host addressing, as FileIO's own S3 storage has it.
        cfg.enable_virtual_host_style = !props.contains_key(S3_PATH_STYLE_ACCESS) || !truthy(S3_PATH_STYLE_ACCESS);
        cfg.skip_signature = truthy(S3_ALLOW_ANONYMOUS);
        cfg.disable_ec2_metadata = truthy(S3_DISABLE_EC2_METADATA);
        cfg.disable_config_load = truthy(S3_DISABLE_CONFIG_LOAD);
        let op = Operator::from_config(cfg)?
            .finish()
            .layer(TimeoutLayer::new().with_timeout(REQUEST_TIMEOUT).with_io_timeout(REQUEST_TIMEOUT))
            .layer(RetryLayer::new());
        return Ok((op, format!("{scheme}://{bucket}/"), key.to_string()));
    }
    let (prefix, absolute) = if let Some(path) = dir.strip_prefix("file:") {
        ("file:///", format!("/{}", path.trim_start_matches('/')))
    } else if dir.starts_with('/') {
        ("/", dir.to_string())
    } else {
        return Err(unsupported(format!("{dir}: only local (file:/) and S3 (s3://) folders can be listed")));
    };
    let mut cfg = FsConfig::default();
    cfg.root = Some("/".into());
    let op = Operator::from_config(cfg)?.finish();
    Ok((op, prefix.to_string(), absolute.trim_start_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_files_in_the_folders_form_with_size_and_age() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t/data/p=1")).unwrap();
        std::fs::write(dir.path().join("t/data/p=1/a.parquet"), b"12345").unwrap();
        std::fs::write(dir.path().join("t/data/b.parquet"), b"1").unwrap();
        std::fs::write(dir.path().join("t/other"), b"1").unwrap();
        let root = dir.path().display().to_string();

        let mut plain = list(&format!("{root}/t/data"), &HashMap::new()).await.unwrap();
        plain.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<&str> = plain.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [format!("{root}/t/data/b.parquet"), format!("{root}/t/data/p=1/a.parquet")]);
        assert_eq!(plain[1].bytes, 5);
        let now = chrono::Utc::now().timestamp_millis();
        assert!(plain.iter().all(|f| f.modified_ms.is_some_and(|m| (now - m).abs() < 60_000)), "{plain:?}");

        let url = list(&format!("file://{root}/t/data/"), &HashMap::new()).await.unwrap();
        assert!(url.iter().all(|f| f.path.starts_with(&format!("file://{root}/t/data/"))), "{url:?}");
        assert_eq!(url.len(), 2);
    }

    #[tokio::test]
    async fn a_missing_folder_has_no_files_and_an_unknown_scheme_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let none = list(&format!("{}/absent", dir.path().display()), &HashMap::new()).await.unwrap();
        assert!(none.is_empty());
        let e = list("gs://bucket/t/data", &HashMap::new()).await.unwrap_err().to_string();
        assert!(e.contains("gs://bucket/t/data/") && e.contains("only local"), "{e}");
    }
}
