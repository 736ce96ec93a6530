//! Media in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, …). Objects are kept under
//! `media/<key>`; uploads stream through multipart uploads in bounded memory.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::task::JoinHandle;
use url::Url;

use super::{ByteStream, StorageError, Upload, UploadInner, validate_key};
use crate::config::S3Config;

/// Size of each part of a multipart upload. An upload holds at most two parts in memory: the one
/// being sent and the one being filled. Smaller files go up in a single request.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Prefix of every object key (§5.3).
const KEY_PREFIX: &str = "media/";

#[derive(Clone)]
pub struct S3Storage {
    client: Client,
    /// Signs the URLs handed to browsers (`S3_PRESIGN_ENDPOINT`, else the same as `client`).
    presign_client: Client,
    bucket: String,
    public_base_url: Option<Url>,
    presign_ttl: Duration,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage").field("bucket", &self.bucket).finish_non_exhaustive()
    }
}

/// A short description of an SDK error: code and message of the service, or the transport failure.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E>) -> String {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let status = s.raw().status().as_u16();
            match (err.code(), err.message()) {
                (Some(code), Some(msg)) => format!("{code} ({status}): {msg}"),
                (Some(code), None) => format!("{code} ({status})"),
                _ => format!("HTTP {status}"),
            }
        }
        SdkError::DispatchFailure(d) => {
            let mut text = "the object store is unreachable".to_string();
            if let Some(c) = d.as_connector_error() {
                let mut source: Option<&dyn std::error::Error> = Some(c);
                while let Some(s) = source {
                    text = format!("the object store is unreachable: {s}");
                    source = s.source();
                }
            }
            text
        }
        SdkError::TimeoutError(_) => "the object store did not answer in time".to_string(),
        other => other.to_string(),
    }
}

fn remote<E: ProvideErrorMetadata + std::error::Error + 'static>(e: SdkError<E>) -> StorageError {
    StorageError::Remote(describe(&e))
}

fn status_of<E>(e: &SdkError<E>) -> Option<u16> {
    match e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    }
}

impl S3Storage {
    /// Builds the client from `S3_*` settings and the AWS SDK's usual credential sources
    /// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, web identity, instance roles), then
    /// verifies the bucket, creating it when it does not exist.
    pub async fn connect(cfg: &S3Config) -> anyhow::Result<Self> {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .http_client(http);
        if let Some((id, secret)) = &cfg.static_credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id,
                secret.expose(),
                None,
                None,
                "S3_ACCESS_KEY_ID",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.force_path_style)
            // Checksums only where the API requires them: several S3-compatible stores reject
            // the newer default trailers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        let presign_client = cfg.presign_endpoint.as_ref().map(|endpoint| {
            Client::from_conf(builder.clone().endpoint_url(endpoint.as_str().trim_end_matches('/')).build())
        });
        let client = Client::from_conf(builder.build());
        let storage = Self {
            presign_client: presign_client.unwrap_or_else(|| client.clone()),
            client,
            bucket: cfg.bucket.clone(),
            public_base_url: cfg.public_base_url.clone(),
            presign_ttl: cfg.presign_ttl,
        };
        storage.ensure_bucket(&cfg.region).await?;
        Ok(storage)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn ensure_bucket(&self, region: &str) -> anyhow::Result<()> {
        let bucket = &self.bucket;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) if status_of(&e) == Some(403) => {
                anyhow::bail!("S3 bucket {bucket:?} is not accessible with these credentials (403 Forbidden)")
            }
            Err(e) => anyhow::bail!("S3 bucket {bucket:?} could not be checked: {}", describe(&e)),
        }
        let mut create = self.client.create_bucket().bucket(bucket);
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {
                tracing::info!(bucket, "S3 bucket created");
                self.abort_stale_multipart_uploads().await;
                Ok(())
            }
            // Another process created it at the same moment.
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou")) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("{}", describe(&e)))
                .with_context(|| format!("S3 bucket {bucket:?} does not exist and could not be created")),
        }
    }

    /// Sets an `AbortIncompleteMultipartUpload` lifecycle rule (one day) on a bucket this process
    /// created, so that uploads interrupted by a crash do not stay in the bucket forever.
    /// Operators set the same rule on existing buckets (`docs/deploying.md`).
    async fn abort_stale_multipart_uploads(&self) {
        use aws_sdk_s3::types::{
            AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleRule,
            LifecycleRuleFilter,
        };
        let rule = LifecycleRule::builder()
            .id("abort-incomplete-multipart-uploads")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder().days_after_initiation(1).build(),
            )
            .build();
        let config = match rule.map(|r| BucketLifecycleConfiguration::builder().rules(r).build()) {
            Ok(Ok(c)) => c,
            _ => return,
        };
        let result = self
            .client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(config)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(bucket = %self.bucket, error = %describe(&e), "lifecycle rule for interrupted uploads not set");
        }
    }

    pub(super) async fn check(&self) -> Result<(), StorageError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(remote)?;
        Ok(())
    }

    /// The object key of a storage key.
    pub fn object_key(key: &str) -> Result<String, StorageError> {
        Ok(format!("{KEY_PREFIX}{}", validate_key(key)?))
    }

    pub(super) fn begin_upload(&self, key: &str, content_type: &str) -> Result<Upload, StorageError> {
        Ok(Upload {
            inner: UploadInner::S3(S3Upload {
                client: self.client.clone(),
                bucket: self.bucket.clone(),
                key: Self::object_key(key)?,
                content_type: content_type.to_string(),
                buf: BytesMut::new(),
                upload_id: None,
                parts: Vec::new(),
                in_flight: None,
                spare: None,
                written: 0,
            }),
        })
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let object = Self::object_key(key)?;
        // S3 deletes are idempotent; ask first so a missing object reports NotFound like a file.
        self.size(key).await?;
        self.client.delete_object().bucket(&self.bucket).key(object).send().await.map_err(remote)?;
        Ok(())
    }

    /// Lists the objects under `prefix/` page by page and deletes them in batches.
    pub(super) async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let folder = format!("{}/", Self::object_key(prefix)?);
        let mut deleted = 0;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&folder)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(remote)?;
            let ids: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            if !ids.is_empty() {
                let n = ids.len();
                let delete = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| StorageError::Remote(e.to_string()))?;
                self.client.delete_objects().bucket(&self.bucket).delete(delete).send().await.map_err(remote)?;
                deleted += n;
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(deleted),
            }
        }
    }

    pub(super) async fn size(&self, key: &str) -> Result<u64, StorageError> {
        let object = Self::object_key(key)?;
        match self.client.head_object().bucket(&self.bucket).key(object).send().await {
            Ok(h) => Ok(h.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0)),
            Err(e) if status_of(&e) == Some(404) => Err(StorageError::NotFound),
            Err(e) => Err(remote(e)),
        }
    }

    pub(super) async fn open(&self, key: &str) -> Result<(u64, ByteStream), StorageError> {
        let object = Self::object_key(key)?;
        let out = match self.client.get_object().bucket(&self.bucket).key(object).send().await {
            Ok(o) => o,
            Err(e) if status_of(&e) == Some(404) => return Err(StorageError::NotFound),
            Err(e) => return Err(remote(e)),
        };
        let length = out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        let reader = out.body.into_async_read();
        Ok((length, tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).boxed()))
    }

    /// A presigned GET URL of the object for this process (ffprobe), valid for `ttl`.
    pub async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        Self::presign(&self.client, &self.bucket, key, ttl).await
    }

    /// Signing happens locally: no request is made.
    async fn presign(client: &Client, bucket: &str, key: &str, ttl: Duration) -> Result<String, StorageError> {
        let object = Self::object_key(key)?;
        let cfg = PresigningConfig::expires_in(ttl).map_err(|e| StorageError::Remote(e.to_string()))?;
        let req = client
            .get_object()
            .bucket(bucket)
            .key(object)
            .presigned(cfg)
            .await
            .map_err(|e| StorageError::Remote(e.to_string()))?;
        Ok(req.uri().to_string())
    }

    pub(super) async fn public_url(&self, key: &str) -> Result<String, StorageError> {
        match &self.public_base_url {
            Some(base) => {
                let object = Self::object_key(key)?;
                Ok(format!("{}/{object}", base.as_str().trim_end_matches('/')))
            }
            None => Self::presign(&self.presign_client, &self.bucket, key, self.presign_ttl).await,
        }
    }
}

/// A part the store has acknowledged, and its buffer when it can be reused.
type SentPart = (CompletedPart, Option<BytesMut>);

/// An object on its way into the bucket. Up to [`PART_SIZE`] bytes it is sent with one
/// `PutObject` at the end; beyond that as a multipart upload, one part sent while the next one
/// fills. Nothing is visible under the key before `finish`; `abort` (or dropping it) aborts the
/// multipart upload so no parts are left behind.
pub(super) struct S3Upload {
    client: Client,
    bucket: String,
    key: String,
    content_type: String,
    buf: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    /// The part being sent, which hands its buffer back for the next part when it is done.
    in_flight: Option<JoinHandle<Result<SentPart, StorageError>>>,
    spare: Option<BytesMut>,
    written: u64,
}

impl S3Upload {
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    pub(super) async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        let mut chunk = chunk;
        while !chunk.is_empty() {
            if self.buf.capacity() == 0 {
                // Two buffers serve the whole upload: the one filling and the one being sent.
                self.buf = self.spare.take().unwrap_or_else(|| BytesMut::with_capacity(PART_SIZE));
            }
            let take = chunk.len().min(PART_SIZE - self.buf.len());
            self.buf.extend_from_slice(&chunk[..take]);
            self.written += take as u64;
            chunk = &chunk[take..];
            if self.buf.len() == PART_SIZE {
                let part = std::mem::take(&mut self.buf).freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    /// Waits for the part in flight, then starts sending `body` as the next part.
    async fn send_part(&mut self, body: Bytes) -> Result<(), StorageError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .content_type(&self.content_type)
                    .send()
                    .await
                    .map_err(remote)?;
                let id = created
                    .upload_id()
                    .ok_or_else(|| StorageError::Remote("multipart upload started without an id".into()))?
                    .to_string();
                self.upload_id = Some(id.clone());
                id
            }
        };
        self.await_in_flight().await?;
        let part_number =
            i32::try_from(self.parts.len() + 1).map_err(|_| StorageError::Remote("too many parts".into()))?;
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(body.len() as i64)
            .body(S3Body::from(body.clone()));
        self.in_flight = Some(tokio::spawn(async move {
            let out = req.send().await.map_err(remote)?;
            let part =
                CompletedPart::builder().set_e_tag(out.e_tag().map(str::to_string)).part_number(part_number).build();
            // The request is gone, so this is the last handle on the buffer.
            Ok((part, body.try_into_mut().ok()))
        }));
        Ok(())
    }

    async fn await_in_flight(&mut self) -> Result<(), StorageError> {
        if let Some(handle) = self.in_flight.take() {
            let (part, buffer) =
                handle.await.map_err(|e| StorageError::Remote(format!("part upload stopped: {e}")))??;
            self.parts.push(part);
            if let Some(mut buffer) = buffer {
                buffer.clear();
                self.spare = Some(buffer);
            }
        }
        Ok(())
    }

    pub(super) async fn finish(mut self) -> Result<u64, StorageError> {
        match self.complete().await {
            Ok(()) => Ok(self.written),
            Err(e) => {
                self.abort_remote().await;
                Err(e)
            }
        }
    }

    async fn complete(&mut self) -> Result<(), StorageError> {
        let rest = std::mem::take(&mut self.buf).freeze();
        if self.upload_id.is_none() {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .content_length(rest.len() as i64)
                .body(S3Body::from(rest))
                .send()
                .await
                .map_err(remote)?;
            return Ok(());
        }
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        self.await_in_flight().await?;
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder().set_parts(Some(std::mem::take(&mut self.parts))).build(),
            )
            .send()
            .await
            .map_err(remote)?;
        self.upload_id = None;
        Ok(())
    }

    pub(super) async fn abort(mut self) {
        self.abort_remote().await;
    }

    async fn abort_remote(&mut self) {
        if let Some(handle) = self.in_flight.take() {
            handle.abort();
            let _ = handle.await;
        }
        if let Some(upload_id) = self.upload_id.take() {
            let req = self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(upload_id);
            if let Err(e) = req.send().await {
                tracing::warn!(storage.key = %self.key, error = %describe(&e), "multipart upload could not be aborted");
            }
        }
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        // A request cancelled mid-body drops the upload without reaching abort.
        if let Some(handle) = self.in_flight.take() {
            handle.abort();
        }
        if let Some(upload_id) = self.upload_id.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let req = self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(upload_id);
            let key = self.key.clone();
            rt.spawn(async move {
                if let Err(e) = req.send().await {
                    tracing::warn!(storage.key = %key, error = %describe(&e), "multipart upload could not be aborted");
                }
            });
        }
    }
}
