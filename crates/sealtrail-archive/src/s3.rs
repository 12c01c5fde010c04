//! A small client for S3-compatible object stores, for archive segments: each request is
//! signed with SigV4 by rusty-s3 (as a presigned URL) and sent with a blocking reqwest
//! client. Only what archiving needs: create a bucket, HEAD, PUT (with Content-MD5, the
//! SHA-256 as metadata, optional Object Lock retention, optionally only if absent), GET,
//! DELETE and a paginated ListObjectsV2.
//!
//! Blocking, not async: the archive crate is synchronous (the CLI; the retention run calls
//! it from a blocking thread), and reqwest's blocking client runs its own small runtime,
//! so callers need none. Do not call it from inside an async task.
//!
//! Settings come from the standard AWS variables ([`S3Settings::from_env`]); errors name the
//! variable to check and never contain a signed URL (its query holds the signature).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::{StatusCode, Url};
use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::ArchiveError;

/// How long a signed request stays valid once signed (it is sent at once).
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// How long to wait for a connection to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in all: a segment of a few hundred MB at 1 MB/s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Keys per ListObjectsV2 page unless asked otherwise (S3's own maximum).
pub const DEFAULT_LIST_PAGE: usize = 1000;

/// The variable choosing path-style URLs (`http://host/bucket/key`, which local servers
/// and IP endpoints need) over virtual-hosted ones (`http://bucket.host/key`). Default:
/// path-style when an endpoint is given, virtual-hosted for Amazon S3.
pub const PATH_STYLE_ENV: &str = "SEALTRAIL_S3_PATH_STYLE";

/// The metadata header holding an object's SHA-256 (lowercase hex), checked after upload
/// and when a segment is published again.
const SHA256_HEADER: &str = "x-amz-meta-sha256";

/// Where the object store is and how to sign for it.
#[derive(Clone)]
pub struct S3Settings {
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, else `https://s3.<region>.amazonaws.com`.
    pub endpoint: Url,
    /// Whether `endpoint` was given (it is named in error messages).
    pub endpoint_from: &'static str,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION` (`us-east-1` with an endpoint and neither).
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
    /// Path-style URLs ([`PATH_STYLE_ENV`]).
    pub path_style: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("path_style", &self.path_style)
            .finish()
    }
}

fn settings_error(detail: impl Into<String>) -> ArchiveError {
    ArchiveError::Settings(detail.into())
}

impl S3Settings {
    /// The settings from the process's environment (see [`S3Settings::from_vars`]).
    pub fn from_env() -> Result<Self, ArchiveError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The settings from the variables `var` looks up (empty counts as unset). Errors name
    /// the variable and why it does not do.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ArchiveError> {
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .into_iter()
            .find_map(|name| var(name).map(|value| (name, value)));
        let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
        let (endpoint, endpoint_from, region) = match (endpoint, region) {
            (Some((name, text)), region) => {
                let url = Url::parse(&text)
                    .map_err(|e| settings_error(format!("{name} is not a URL: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(settings_error(format!(
                        "{name} is not a URL S3 can be reached at: it must be http:// or \
                         https:// with a host, not {text:?}"
                    )));
                }
                (url, name, region.unwrap_or_else(|| "us-east-1".to_owned()))
            }
            (None, Some(region)) => {
                if !region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    return Err(settings_error(format!(
                        "AWS_REGION is not a region name: {region:?}"
                    )));
                }
                let url = Url::parse(&format!("https://s3.{region}.amazonaws.com"))
                    .map_err(|e| settings_error(format!("AWS_REGION {region:?}: {e}")))?;
                (url, "AWS_REGION", region)
            }
            (None, None) => {
                return Err(settings_error(
                    "an s3:// archive needs AWS_REGION (Amazon S3) or AWS_ENDPOINT_URL (another \
                     S3-compatible store); neither is set",
                ));
            }
        };
        let required = |name: &str| {
            var(name).ok_or_else(|| {
                settings_error(format!(
                    "{name} is not set: an s3:// archive needs credentials"
                ))
            })
        };
        let access_key_id = required("AWS_ACCESS_KEY_ID")?;
        let secret_access_key = required("AWS_SECRET_ACCESS_KEY")?;
        let path_style = match var(PATH_STYLE_ENV).as_deref() {
            None => endpoint_from != "AWS_REGION",
            Some("1" | "true" | "yes") => true,
            Some("0" | "false" | "no") => false,
            Some(other) => {
                return Err(settings_error(format!(
                    "{PATH_STYLE_ENV} must be true or false, not {other:?}"
                )));
            }
        };
        Ok(Self {
            endpoint,
            endpoint_from,
            region,
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
            path_style,
        })
    }
}

/// What a HEAD (or a PUT) says of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its size in bytes (`Content-Length`).
    pub size: u64,
    /// Its ETag without quotes (for a single PUT without KMS: the MD5 in hex).
    pub etag: Option<String>,
    /// The SHA-256 its uploader recorded as metadata, if any.
    pub sha256: Option<String>,
    /// Its version, in a versioned bucket.
    pub version_id: Option<String>,
    /// Its Object Lock retention: mode and retain-until date, if it has one.
    pub lock: Option<(String, String)>,
}

/// An object a listing found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a PUT sends besides the body.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// The body's MD5 (sent as `Content-MD5`: the store checks the body against it, and
    /// S3 requires it, or another checksum, for a PUT with Object Lock retention).
    pub md5: [u8; 16],
    /// The body's SHA-256, kept as metadata ([`ObjectInfo::sha256`]).
    pub sha256: [u8; 32],
    /// Object Lock retention in COMPLIANCE mode until this instant (RFC 3339): nobody, the
    /// root account included, can delete or overwrite this version before then.
    pub retain_until: Option<String>,
    /// Only write if no object has the key (`If-None-Match: *`).
    pub if_absent: bool,
}

impl PutOptions {
    /// The options for `body`: its MD5 and SHA-256, no retention, overwriting.
    pub fn for_bytes(body: &[u8]) -> Self {
        use md5::Digest as _;
        Self {
            md5: md5::Md5::digest(body).into(),
            sha256: sha2::Sha256::digest(body).into(),
            ..Self::default()
        }
    }
}

/// What a PUT did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written; the version it made, in a versioned bucket.
    Written {
        /// `x-amz-version-id`.
        version_id: Option<String>,
    },
    /// Not written: `if_absent` and an object has the key already.
    AlreadyExists,
}

/// One bucket of an S3-compatible store.
pub struct S3Bucket {
    bucket: Bucket,
    credentials: Credentials,
    client: Client,
    endpoint: String,
    endpoint_from: &'static str,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Bucket")
            .field("name", &self.bucket.name())
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Bucket {
    /// The bucket `name` at the store `settings` describe. Sends nothing yet.
    pub fn new(settings: &S3Settings, name: &str) -> Result<Self, ArchiveError> {
        let valid = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        if !valid {
            return Err(settings_error(format!(
                "s3://{name}: a bucket name is 3 to 63 lowercase letters, digits, '-' or '.'"
            )));
        }
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            settings.endpoint.clone(),
            style,
            name.to_owned(),
            settings.region.clone(),
        )
        .map_err(|e| {
            settings_error(format!(
                "bucket {name:?} at {} ({}): {e:?}{}",
                settings.endpoint,
                settings.endpoint_from,
                if settings.path_style {
                    ""
                } else {
                    "; for an IP endpoint set SEALTRAIL_S3_PATH_STYLE=true"
                }
            ))
        })?;
        let credentials = match &settings.session_token {
            Some(token) => Credentials::new_with_token(
                &settings.access_key_id,
                &settings.secret_access_key,
                token,
            ),
            None => Credentials::new(&settings.access_key_id, &settings.secret_access_key),
        };
        // reqwest is built without a TLS provider of its own; ring is the workspace's.
        // Err means one is installed already, which is all that is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| settings_error(format!("building the S3 HTTP client: {e}")))?;
        Ok(Self {
            bucket,
            credentials,
            client,
            endpoint: settings.endpoint.to_string(),
            endpoint_from: settings.endpoint_from,
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        self.bucket.name()
    }

    /// `s3://bucket/key`, for messages.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket.name())
    }

    /// Creates the bucket, with Object Lock enabled if asked (which also turns versioning
    /// on: S3 locks versions, not keys).
    pub fn create(&self, object_lock: bool) -> Result<(), ArchiveError> {
        let mut action = self.bucket.create_bucket(&self.credentials);
        if object_lock {
            action
                .headers_mut()
                .insert("x-amz-bucket-object-lock-enabled", "true");
        }
        let body = action.body();
        let url = action.sign(SIGNED_FOR);
        let mut request = self.client.put(url).body(body);
        if object_lock {
            request = request.header("x-amz-bucket-object-lock-enabled", "true");
        }
        let response = self.send("creating bucket", "", request)?;
        self.expect_success("creating bucket", "", response)?;
        Ok(())
    }

    /// What the store says of `key`, or `None` if it has no such object.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ArchiveError> {
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let response = self.send("HEAD", key, self.client.head(url))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.expect_success("HEAD", key, response)?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_owned())
        };
        let size = header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                self.store_error("HEAD", key, "the answer has no Content-Length".to_owned())
            })?;
        Ok(Some(ObjectInfo {
            size,
            etag: header("etag"),
            sha256: header(SHA256_HEADER),
            version_id: header("x-amz-version-id"),
            lock: header("x-amz-object-lock-mode")
                .zip(header("x-amz-object-lock-retain-until-date")),
        }))
    }

    /// Uploads `bytes` to `key`.
    pub fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        options: &PutOptions,
    ) -> Result<PutOutcome, ArchiveError> {
        let len = bytes.len() as u64;
        self.put(key, Body::from(bytes), len, options)
    }

    /// Uploads the file at `path` to `key`, streamed from disk.
    pub fn put_file(
        &self,
        key: &str,
        path: &Path,
        options: &PutOptions,
    ) -> Result<PutOutcome, ArchiveError> {
        let file = std::fs::File::open(path)
            .map_err(|e| ArchiveError::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| ArchiveError::io(format!("reading {}", path.display()), e))?
            .len();
        self.put(key, Body::sized(file, len), len, options)
    }

    fn put(
        &self,
        key: &str,
        body: Body,
        len: u64,
        options: &PutOptions,
    ) -> Result<PutOutcome, ArchiveError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut headers: Vec<(&str, String)> = vec![
            ("content-md5", b64.encode(options.md5)),
            (SHA256_HEADER, hex::encode(options.sha256)),
        ];
        if let Some(until) = &options.retain_until {
            headers.push(("x-amz-object-lock-mode", "COMPLIANCE".to_owned()));
            headers.push(("x-amz-object-lock-retain-until-date", until.clone()));
        }
        if options.if_absent {
            headers.push(("if-none-match", "*".to_owned()));
        }
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        for (name, value) in &headers {
            action.headers_mut().insert(*name, value.clone());
        }
        let url = action.sign(SIGNED_FOR);
        let mut request = self
            .client
            .put(url)
            .header("content-length", len)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = self.send("PUT", key, request)?;
        if options.if_absent && response.status() == StatusCode::PRECONDITION_FAILED {
            return Ok(PutOutcome::AlreadyExists);
        }
        let response = self.expect_success("PUT", key, response)?;
        let version_id = response
            .headers()
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(PutOutcome::Written { version_id })
    }

    /// Downloads `key` (its `version`, or the current one) into `out`, refusing one larger
    /// than `limit` bytes; `None` if there is no such object. Returns the bytes written.
    pub fn download(
        &self,
        key: &str,
        version: Option<&str>,
        out: &mut impl Write,
        limit: u64,
    ) -> Result<Option<u64>, ArchiveError> {
        let mut action = self.bucket.get_object(Some(&self.credentials), key);
        if let Some(version) = version {
            action.query_mut().insert("versionId", version.to_owned());
        }
        let url = action.sign(SIGNED_FOR);
        let response = self.send("GET", key, self.client.get(url))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.expect_success("GET", key, response)?;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(self.store_error(
                "GET",
                key,
                format!(
                    "{} bytes, more than the {limit} a reader accepts",
                    response.content_length().unwrap_or_default()
                ),
            ));
        }
        let mut limited = std::io::Read::take(response, limit + 1);
        let copied = std::io::copy(&mut limited, out)
            .map_err(|e| self.store_error("GET", key, format!("reading the body: {e}")))?;
        if copied > limit {
            return Err(self.store_error(
                "GET",
                key,
                format!("more than the {limit} bytes a reader accepts"),
            ));
        }
        Ok(Some(copied))
    }

    /// The object at `key` (its `version`, or the current one), read whole; `None` if
    /// there is none. For small objects: at most `limit` bytes.
    pub fn get(
        &self,
        key: &str,
        version: Option<&str>,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        let mut bytes = Vec::new();
        Ok(self
            .download(key, version, &mut bytes, limit)?
            .map(|_| bytes))
    }

    /// Deletes `key` (its `version`, or else the current one: in a versioned bucket that
    /// only adds a delete marker). Object Lock refuses deleting a retained version.
    pub fn delete(&self, key: &str, version: Option<&str>) -> Result<(), ArchiveError> {
        let mut action = self.bucket.delete_object(Some(&self.credentials), key);
        if let Some(version) = version {
            action.query_mut().insert("versionId", version.to_owned());
        }
        let url = action.sign(SIGNED_FOR);
        let response = self.send("DELETE", key, self.client.delete(url))?;
        self.expect_success("DELETE", key, response)?;
        Ok(())
    }

    /// Every object whose key starts with `prefix` and has no further `/` after it (one
    /// "directory"), in key order, reading pages of `page` keys (continuation tokens).
    pub fn list(&self, prefix: &str, page: usize) -> Result<Vec<ListedObject>, ArchiveError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix.to_owned());
            action.with_delimiter("/");
            action.with_max_keys(page.max(1));
            if let Some(token) = &token {
                action.with_continuation_token(token.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let response = self.send("listing", prefix, self.client.get(url))?;
            let response = self.expect_success("listing", prefix, response)?;
            let text = response
                .text()
                .map_err(|e| self.store_error("listing", prefix, format!("reading: {e}")))?;
            let listing = ListObjectsV2::parse_response(&text).map_err(|e| {
                self.store_error("listing", prefix, format!("unreadable answer: {e}"))
            })?;
            objects.extend(listing.contents.into_iter().map(|c| ListedObject {
                size: c.size.unwrap_or_default(),
                key: c.key,
            }));
            match listing.next_continuation_token {
                Some(next) if token.as_deref() == Some(next.as_str()) => {
                    return Err(self.store_error(
                        "listing",
                        prefix,
                        "the store returned the same continuation token twice".to_owned(),
                    ));
                }
                Some(next) => token = Some(next),
                None => break,
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Sends `request`, turning a transport failure into an error naming the endpoint
    /// (never the signed URL).
    fn send(
        &self,
        what: &str,
        key: &str,
        request: RequestBuilder,
    ) -> Result<Response, ArchiveError> {
        request.send().map_err(|e| {
            let e = e.without_url();
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                detail.push_str(": ");
                detail.push_str(&cause.to_string());
                source = cause.source();
            }
            self.store_error(
                what,
                key,
                format!(
                    "cannot reach {} ({}): {detail}",
                    self.endpoint, self.endpoint_from
                ),
            )
        })
    }

    /// `response` if it is a success; otherwise the store's error code and message, with
    /// a hint at the setting to check.
    fn expect_success(
        &self,
        what: &str,
        key: &str,
        response: Response,
    ) -> Result<Response, ArchiveError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().unwrap_or_default();
        let code = xml_element(&body, "Code");
        let message = xml_element(&body, "Message");
        let hint = match code.as_deref() {
            Some(
                "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken",
            ) => {
                " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN)".to_owned()
            }
            Some("AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") => {
                " (check AWS_REGION)".to_owned()
            }
            Some("NoSuchBucket") => format!(
                " (no bucket {:?} at {} ({}))",
                self.bucket.name(),
                self.endpoint,
                self.endpoint_from
            ),
            Some("AccessDenied") => {
                " (the credentials may not do this, or Object Lock retains the object)".to_owned()
            }
            _ if status == StatusCode::FORBIDDEN => {
                " (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".to_owned()
            }
            _ => String::new(),
        };
        let said = match (code, message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            (None, _) if body.trim().is_empty() => "no details".to_owned(),
            (None, _) => body
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(200)
                .collect(),
        };
        Err(self.store_error(what, key, format!("{status}: {said}{hint}")))
    }

    fn store_error(&self, what: &str, key: &str, detail: String) -> ArchiveError {
        ArchiveError::ObjectStore {
            context: format!("{what} {}", self.url_of(key)),
            detail,
        }
    }
}

/// The text of the first `<name>` element of an S3 error document, if any.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + body[start..].find(&format!("</{name}>"))?;
    Some(body[start..end].trim().to_owned()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_name_the_variable_that_is_wrong() {
        let keys = [("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")];
        let err =
            |pairs: &[(&str, &str)]| S3Settings::from_vars(vars(pairs)).unwrap_err().to_string();
        assert!(err(&keys).contains("AWS_REGION"), "{}", err(&keys));
        let bad = [keys[0], keys[1], ("AWS_ENDPOINT_URL", "not a url")];
        assert!(
            err(&bad).contains("AWS_ENDPOINT_URL is not a URL"),
            "{}",
            err(&bad)
        );
        let bad = [keys[0], keys[1], ("AWS_ENDPOINT_URL", "ftp://host")];
        assert!(
            err(&bad).contains("AWS_ENDPOINT_URL is not a URL S3"),
            "{}",
            err(&bad)
        );
        let bad = [("AWS_REGION", "eu-west-1"), keys[1]];
        assert!(
            err(&bad).contains("AWS_ACCESS_KEY_ID is not set"),
            "{}",
            err(&bad)
        );
        let bad = [("AWS_REGION", "eu-west-1"), keys[0]];
        assert!(
            err(&bad).contains("AWS_SECRET_ACCESS_KEY is not set"),
            "{}",
            err(&bad)
        );
        let bad = [
            keys[0],
            keys[1],
            ("AWS_REGION", "eu"),
            (PATH_STYLE_ENV, "maybe"),
        ];
        assert!(err(&bad).contains(PATH_STYLE_ENV), "{}", err(&bad));
    }

    #[test]
    fn an_endpoint_means_path_style_and_the_s3_variable_wins() {
        let pairs = [
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2"),
        ];
        let s = S3Settings::from_vars(vars(&pairs)).unwrap();
        assert_eq!(s.endpoint.as_str(), "http://127.0.0.1:2/");
        assert!(s.path_style);
        assert_eq!(s.region, "us-east-1");
        assert!(!format!("{s:?}").contains("\"s\""), "{s:?}");
        let aws = [pairs[0], pairs[1], ("AWS_DEFAULT_REGION", "eu-west-1")];
        let s = S3Settings::from_vars(vars(&aws)).unwrap();
        assert_eq!(s.endpoint.as_str(), "https://s3.eu-west-1.amazonaws.com/");
        assert!(!s.path_style);
    }

    #[test]
    fn error_documents_give_their_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The \
                    specified bucket does not exist</Message></Error>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(
            xml_element(body, "Message").as_deref(),
            Some("The specified bucket does not exist")
        );
        assert_eq!(xml_element("", "Code"), None);
    }
}
