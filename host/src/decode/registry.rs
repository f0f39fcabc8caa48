//! A client for the Confluent schema registry REST API: writer schemas by id, cached and bounded.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema as AvroSchema;
use serde::Deserialize;

use crate::config::{RegistryConfig, redact_url};
use crate::schema::mapping::{SchemaTextError, parse_schema};

/// The media types the Confluent API answers with; Apicurio and Karapace accept them too.
const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json";

/// The wait before asking once more for an id the registry said it does not have.
const NOT_FOUND_RETRY: Duration = Duration::from_millis(250);

/// A writer schema as the registry holds it.
#[derive(Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    pub schema: AvroSchema,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that there is no such id: the record that names it is bad.
    #[error("schema registry {url}: schema id {id} is not registered")]
    NotFound { url: String, id: u32 },
    /// The id names a schema k2-ingest cannot decode with (not Avro, references, unparsable):
    /// the record that names it is bad.
    #[error("schema registry {url}: schema id {id}: {message}")]
    Unusable { url: String, id: u32, message: String },
    /// The id is registered, but under no version of the topic's subject: a producer of another
    /// topic (or a forged frame) wrote it, so the record is bad.
    #[error(
        "schema registry {url}: schema id {id} is held by {held}, not by the topic's subject {subject}; \
         set topics[].allow_other_subjects = true to accept ids of other subjects"
    )]
    OtherSubject { url: String, id: u32, subject: String, held: String },
    /// No answer, or one that is not about the schema (auth, server error): an operator must
    /// act, and no record may be set aside for it.
    #[error("schema registry {url}: {context}: {message}")]
    Unavailable { url: String, context: String, message: String },
}

impl RegistryError {
    /// Whether the error is about the record's schema id rather than the registry.
    pub fn is_bad_record(&self) -> bool {
        !matches!(self, RegistryError::Unavailable { .. })
    }
}

/// What `GET /schemas/ids/{id}` and `GET /subjects/{subject}/versions/latest` return (the
/// latter with the id and version too).
#[derive(Deserialize)]
struct SchemaAnswer {
    #[serde(default)]
    id: Option<u32>,
    #[serde(default)]
    version: Option<i64>,
    schema: String,
    /// Absent means Avro (the API predates other types).
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

/// One subject version that holds a schema id.
#[derive(Debug, Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i64,
}

enum Auth {
    None,
    Basic { username: String, password: Option<String> },
    Bearer(String),
}

/// A schema fetched by id, and whether the topic's subject holds it (always, when any
/// subject may).
#[derive(Clone)]
struct Cached {
    schema: Arc<RegisteredSchema>,
    subject_holds: bool,
}

/// The registry connection and the schemas fetched through it.
pub struct SchemaRegistry {
    http: reqwest::Client,
    base: String,
    /// The base URL as errors show it: without credentials, which a URL may carry.
    shown: String,
    auth: Auth,
    /// The subject an id must be registered under to be used; `None` takes any subject's.
    required_subject: Option<String>,
    cache: moka::future::Cache<u32, Cached>,
}

impl SchemaRegistry {
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryError> {
        let base = config.url.trim().trim_end_matches('/').to_string();
        let shown = redact_url(&base);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .build()
            .map_err(|e| RegistryError::Unavailable {
                url: shown.clone(),
                context: "building the http client".into(),
                message: e.to_string(),
            })?;
        let auth = match (&config.username, &config.token) {
            (Some(username), _) => Auth::Basic { username: username.clone(), password: config.password.clone() },
            (None, Some(token)) => Auth::Bearer(token.clone()),
            (None, None) => Auth::None,
        };
        let cache = moka::future::Cache::new(config.cache_schemas);
        Ok(Self { http, base, shown, auth, required_subject: None, cache })
    }

    /// Uses only ids registered under some version of `subject` (the topic's): an id of another
    /// subject is refused as [`RegistryError::OtherSubject`].
    pub fn requiring_subject(mut self, subject: String) -> Self {
        self.required_subject = Some(subject);
        self
    }

    /// The schema registered under `id`, from the cache or the registry, if the required
    /// subject (when there is one) holds it.
    pub async fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let schema = match self.cache.get(&id).await {
            Some(hit) if hit.subject_holds => return Ok(hit.schema),
            // Asked again when not held: the producer may register the schema under the topic's
            // subject after the fact (the decoder asks again only once its hold on the id ends).
            Some(hit) => hit.schema,
            None => self.fetch(id).await?,
        };
        let Some(subject) = self.required_subject.clone() else {
            self.cache.insert(id, Cached { schema: schema.clone(), subject_holds: true }).await;
            return Ok(schema);
        };
        let versions = self.subject_versions(id).await?;
        let subject_holds = versions.iter().any(|v| v.subject == subject);
        self.cache.insert(id, Cached { schema: schema.clone(), subject_holds }).await;
        if subject_holds {
            return Ok(schema);
        }
        let held = match versions.as_slice() {
            [] => "no subject".to_string(),
            vs => vs.iter().map(|v| format!("{} version {}", v.subject, v.version)).collect::<Vec<_>>().join(", "),
        };
        Err(RegistryError::OtherSubject { url: self.shown.clone(), id, subject, held })
    }

    /// Fetches the schema of `id` from the registry.
    async fn fetch(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let path = format!("/schemas/ids/{id}");
        let context = format!("fetching schema id {id}");
        let mut body = self.get(&path, &context).await?;
        if body.is_none() {
            // Once more a moment later: a registry follower may lag a schema just registered.
            tokio::time::sleep(NOT_FOUND_RETRY).await;
            body = self.get(&path, &context).await?;
        }
        let Some(body) = body else {
            return Err(RegistryError::NotFound { url: self.shown.clone(), id });
        };
        let schema = self.schema_in(&self.answer(&body, &context)?, id)?;
        Ok(Arc::new(RegisteredSchema { id, schema }))
    }

    /// The latest version of `subject`: its schema id, version number and schema.
    pub async fn latest(&self, subject: &str) -> Result<(u32, i64, AvroSchema), RegistryError> {
        let context = format!("fetching the latest version of subject {subject}");
        let missing = || RegistryError::Unavailable {
            url: self.shown.clone(),
            context: context.clone(),
            message: "the subject has no versions; register the topic's schema, or set topics[].schema".into(),
        };
        let path = format!("/subjects/{}/versions/latest", subject.replace('/', "%2F"));
        let body = self.get(&path, &context).await?.ok_or_else(missing)?;
        let answer = self.answer(&body, &context)?;
        let id = answer.id.ok_or_else(missing)?;
        let schema = self.schema_in(&answer, id)?;
        // The latest version of `subject` is held by it, whichever subject is required: only
        // the topic's own subject is ever asked for.
        let registered = Arc::new(RegisteredSchema { id, schema: schema.clone() });
        self.cache.insert(id, Cached { schema: registered, subject_holds: true }).await;
        Ok((id, answer.version.unwrap_or_default(), schema))
    }

    /// A body read as a schema answer. One that is not (a proxy's page) is the registry's
    /// fault, not the record's.
    fn answer(&self, body: &str, context: &str) -> Result<SchemaAnswer, RegistryError> {
        serde_json::from_str(body).map_err(|e| RegistryError::Unavailable {
            url: self.shown.clone(),
            context: context.to_string(),
            message: format!("not a schema registry answer ({e}): {}", body.chars().take(200).collect::<String>()),
        })
    }

    /// The schema in an answer about `id`. A schema of another kind than Avro is the record's
    /// fault (a producer wrote to the wrong topic); an Avro schema k2-ingest cannot use yet is
    /// the registry's side: an operator must act, and its records must not be set aside meanwhile.
    fn schema_in(&self, answer: &SchemaAnswer, id: u32) -> Result<AvroSchema, RegistryError> {
        let unusable = |message: String| RegistryError::Unusable { url: self.shown.clone(), id, message };
        let unsupported = |message: String| RegistryError::Unavailable {
            url: self.shown.clone(),
            context: format!("schema id {id}"),
            message,
        };
        if let Some(ty) = answer.schema_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("AVRO")) {
            return Err(unusable(format!("is a {ty} schema; k2-ingest decodes Avro")));
        }
        if !answer.references.is_empty() {
            return Err(unsupported("has schema references, which k2-ingest does not resolve yet".into()));
        }
        let schema = parse_schema(&answer.schema).map_err(|e| match e {
            SchemaTextError::Invalid(_) => unusable(e.to_string()),
            SchemaTextError::Unsupported(_) => unsupported(e.to_string()),
        })?;
        if !matches!(schema, AvroSchema::Record(_)) {
            return Err(unusable("top-level type must be an avro record".into()));
        }
        Ok(schema)
    }

    /// The subject versions that hold `id`, for messages an operator reads; empty when the
    /// registry cannot say.
    pub async fn versions_of(&self, id: u32) -> Vec<SubjectVersion> {
        self.subject_versions(id).await.unwrap_or_default()
    }

    /// The subject versions that hold `id` (`GET /schemas/ids/{id}/versions`); none when the
    /// registry says it has no such id. An answer that cannot be read is the registry's fault.
    async fn subject_versions(&self, id: u32) -> Result<Vec<SubjectVersion>, RegistryError> {
        let context = format!("listing the subject versions of schema id {id}");
        let Some(body) = self.get(&format!("/schemas/ids/{id}/versions"), &context).await? else {
            return Ok(Vec::new());
        };
        serde_json::from_str(&body).map_err(|e| RegistryError::Unavailable {
            url: self.shown.clone(),
            context,
            message: format!("not a list of subject versions ({e}): {}", body.chars().take(200).collect::<String>()),
        })
    }

    /// GETs `path` below the base URL: the body on 200, `None` on 404, an error otherwise.
    async fn get(&self, path: &str, context: &str) -> Result<Option<String>, RegistryError> {
        let unavailable = |message: String| RegistryError::Unavailable {
            url: self.shown.clone(),
            context: context.to_string(),
            message,
        };
        let mut request = self.http.get(format!("{}{path}", self.base)).header(reqwest::header::ACCEPT, ACCEPT);
        request = match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => request.basic_auth(username, password.as_ref()),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        // reqwest's errors repeat the request URL, credentials and all; ours names it already.
        let response = request.send().await.map_err(|e| unavailable(error_chain(&e.without_url())))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| unavailable(error_chain(&e.without_url())))?;
        match status.as_u16() {
            200 => Ok(Some(body)),
            // Confluent says 40403 in the body for a missing schema; a 404 for the whole API
            // (a wrong base URL) has no such code and is the operator's to fix.
            404 if is_missing(&body) => Ok(None),
            401 | 403 => Err(unavailable(format!("http {status}: check registry.username/password or token"))),
            _ => Err(unavailable(format!("http {status}: {}", body.chars().take(300).collect::<String>()))),
        }
    }
}

/// Whether a 404 body is the registry saying the schema or subject is missing (Confluent
/// error codes 40403 and 40401, which Apicurio and Karapace return too), not a path the
/// server does not serve.
fn is_missing(body: &str) -> bool {
    #[derive(Deserialize)]
    struct ErrorBody {
        error_code: i64,
    }
    serde_json::from_str::<ErrorBody>(body).is_ok_and(|e| matches!(e.error_code, 40401 | 40402 | 40403))
}

/// An error with its causes, since reqwest's own message stops at "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// A one-connection-per-answer HTTP server on loopback that records each request's
    /// Authorization header and answers with the given status and body, in order.
    fn serve(answers: Vec<(u16, &'static str)>) -> (String, std::thread::JoinHandle<Vec<Option<String>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut auth = None;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("authorization: ").or(line.strip_prefix("Authorization: ")) {
                        auth = Some(v.trim().to_string());
                    }
                }
                seen.push(auth);
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            seen
        });
        (url, handle)
    }

    fn config(url: &str, username: Option<&str>, password: Option<&str>, token: Option<&str>) -> RegistryConfig {
        RegistryConfig {
            url: url.to_string(),
            username: username.map(String::from),
            password: password.map(String::from),
            token: token.map(String::from),
            timeout_ms: 5000,
            cache_schemas: 10,
        }
    }

    const SCHEMA: &str =
        r#"{"schema":"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}"}"#;

    #[tokio::test]
    async fn sends_basic_or_bearer_auth_and_caches_by_id() {
        let (url, server) = serve(vec![(200, SCHEMA), (200, SCHEMA)]);
        let basic = SchemaRegistry::new(&config(&url, Some("key"), Some("secret"), None)).unwrap();
        assert_eq!(basic.schema(7).await.unwrap().id, 7);
        assert_eq!(basic.schema(7).await.unwrap().id, 7, "the second lookup is served from the cache");
        let bearer = SchemaRegistry::new(&config(&url, None, None, Some("tok"))).unwrap();
        bearer.schema(7).await.unwrap();
        let seen = server.join().unwrap();
        assert_eq!(seen, [Some("Basic a2V5OnNlY3JldA==".to_string()), Some("Bearer tok".to_string())]);
    }

    #[tokio::test]
    async fn tells_a_missing_id_from_a_registry_that_refuses() {
        let (url, server) = serve(vec![
            // Asked twice: the registry may lag a schema registered a moment ago.
            (404, r#"{"error_code":40403,"message":"Schema not found"}"#),
            (404, r#"{"error_code":40403,"message":"Schema not found"}"#),
            (401, r#"{"error_code":40101,"message":"Unauthorized"}"#),
            (200, r#"{"schema":"{}","schemaType":"PROTOBUF"}"#),
            (200, "<html>log in</html>"),
            (200, r#"{"schema":"{\"type\":\"nope\"}"}"#),
            (
                200,
                r#"{"schema":"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"id\",\"type\":{\"type\":\"fixed\",\"name\":\"Id\",\"size\":16,\"logicalType\":\"uuid\"}}]}"}"#,
            ),
        ]);
        let registry = SchemaRegistry::new(&config(&url, None, None, None)).unwrap();
        let missing = registry.schema(1).await.unwrap_err();
        assert!(missing.is_bad_record() && missing.to_string().ends_with("schema id 1 is not registered"), "{missing}");
        let refused = registry.schema(2).await.unwrap_err();
        assert!(!refused.is_bad_record(), "{refused}");
        assert!(
            refused.to_string().contains("http 401 Unauthorized: check registry.username/password or token"),
            "{refused}"
        );
        let protobuf = registry.schema(3).await.unwrap_err();
        assert!(protobuf.is_bad_record() && protobuf.to_string().contains("is a PROTOBUF schema"), "{protobuf}");
        let page = registry.schema(4).await.unwrap_err();
        assert!(!page.is_bad_record() && page.to_string().contains("not a schema registry answer"), "{page}");
        let invalid = registry.schema(5).await.unwrap_err();
        assert!(invalid.is_bad_record() && invalid.to_string().contains("not a valid avro schema"), "{invalid}");
        // A schema k2-ingest cannot use yet stops the topic, as docs/schemas.md says: no record is its fault.
        let fixed_uuid = registry.schema(6).await.unwrap_err();
        assert!(!fixed_uuid.is_bad_record() && fixed_uuid.to_string().contains("uuid on fixed(16)"), "{fixed_uuid}");
        server.join().unwrap();
    }

    #[tokio::test]
    async fn an_id_no_version_of_the_topics_subject_holds_is_the_records_fault() {
        let (url, server) = serve(vec![
            (200, SCHEMA),
            (200, r#"[{"subject":"other-value","version":1}]"#),
            // Asked again later: the producer has since registered it under the topic's subject.
            (200, r#"[{"subject":"other-value","version":1},{"subject":"t-value","version":3}]"#),
            (200, SCHEMA),
            (404, r#"{"error_code":40403,"message":"Schema not found"}"#),
        ]);
        let registry =
            SchemaRegistry::new(&config(&url, None, None, None)).unwrap().requiring_subject("t-value".into());
        let other = registry.schema(7).await.unwrap_err();
        assert!(other.is_bad_record(), "{other}");
        assert!(
            other.to_string().contains(
                "schema id 7 is held by other-value version 1, not by the topic's subject t-value; \
                 set topics[].allow_other_subjects = true"
            ),
            "{other}"
        );
        assert_eq!(registry.schema(7).await.unwrap().id, 7, "held now: the subjects are asked again");
        assert_eq!(registry.schema(7).await.unwrap().id, 7, "the decision is cached with the schema");
        let none = registry.schema(8).await.unwrap_err();
        assert!(none.to_string().contains("schema id 8 is held by no subject, not by"), "{none}");
        server.join().unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_not_the_records_fault() {
        let registry = SchemaRegistry::new(&config("http://127.0.0.1:9", None, None, None)).unwrap();
        let e = registry.schema(1).await.unwrap_err();
        assert!(!e.is_bad_record(), "{e}");
        assert!(e.to_string().starts_with("schema registry http://127.0.0.1:9: fetching schema id 1: "), "{e}");
    }

    #[tokio::test]
    async fn errors_show_the_url_without_its_credentials() {
        let url = "http://svc:pa55@127.0.0.1:9/?api_key=k3y";
        let e = SchemaRegistry::new(&config(url, None, None, None)).unwrap().schema(1).await.unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains("pa55") && !shown.contains("k3y"), "{shown}");
        assert!(
            shown.starts_with("schema registry http://<redacted>@127.0.0.1:9/?<redacted>: fetching schema id 1: "),
            "{shown}"
        );
    }

    #[test]
    fn only_confluent_missing_codes_count_as_not_found() {
        assert!(is_missing(r#"{"error_code":40403,"message":"Schema 9 not found"}"#));
        assert!(is_missing(r#"{"error_code":40401,"message":"Subject not found"}"#));
        assert!(!is_missing(r#"{"error_code":40101,"message":"Unauthorized"}"#));
        assert!(!is_missing("<html>Not Found</html>"));
    }
}
