//! Where media files live. One interface for the api (uploads, serving, deletion) and the
//! activities (probing, streaming to the ML server): a local directory or an S3-compatible bucket.

mod s3;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::fs::File;
use tokio::io::AsyncWriteExt;
use url::Url;
use uuid::Uuid;

pub use s3::{PART_SIZE as S3_PART_SIZE, S3Storage};

use crate::config::StorageConfig;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found")]
    NotFound,
    #[error("invalid storage key")]
    InvalidKey,
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store error: {0}")]
    Remote(String),
}

/// An object's bytes, in order.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// How long a URL handed to ffprobe for a remote object stays valid.
const PROBE_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// The configured store.
#[derive(Debug, Clone)]
pub enum Storage {
    Local(LocalStorage),
    S3(S3Storage),
}

impl Storage {
    /// Opens the configured store; for S3 the bucket is verified, or created when missing.
    pub async fn from_config(cfg: &StorageConfig) -> anyhow::Result<Self> {
        match cfg {
            StorageConfig::Local { root } => Ok(Self::Local(LocalStorage::new(root.clone()).await?)),
            StorageConfig::S3(s3) => Ok(Self::S3(S3Storage::connect(s3).await?)),
        }
    }

    /// Starts writing a new object; nothing is visible under `key` until [`Upload::finish`].
    pub async fn begin_upload(&self, key: &str, content_type: &str) -> Result<Upload, StorageError> {
        match self {
            Self::Local(l) => l.begin_upload(key).await,
            Self::S3(s) => s.begin_upload(key, content_type),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Self::Local(l) => l.delete(key).await,
            Self::S3(s) => s.delete(key).await,
        }
    }

    /// Deletes every object under the folder `prefix` (e.g. `results/<runId>`); returns how many.
    /// A missing folder is not an error.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        let prefix = validate_key(prefix.trim_end_matches('/'))?;
        match self {
            Self::Local(l) => l.delete_dir(prefix).await,
            Self::S3(s) => s.delete_prefix(prefix).await,
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.size(key).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Size of a stored object.
    pub async fn size(&self, key: &str) -> Result<u64, StorageError> {
        match self {
            Self::Local(l) => match tokio::fs::metadata(l.path_of(key)?).await {
                Ok(m) if m.is_file() => Ok(m.len()),
                Ok(_) => Err(StorageError::NotFound),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound),
                Err(e) => Err(e.into()),
            },
            Self::S3(s) => s.size(key).await,
        }
    }

    /// Streams an object's bytes (for S3 straight from the object store, with no temporary file).
    pub async fn read_stream(&self, key: &str) -> Result<ByteStream, StorageError> {
        Ok(self.open(key).await?.1)
    }

    /// An object's size and bytes, from one request.
    pub async fn open(&self, key: &str) -> Result<(u64, ByteStream), StorageError> {
        match self {
            Self::Local(l) => {
                let file = match File::open(l.path_of(key)?).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound),
                    Err(e) => return Err(e.into()),
                };
                let meta = file.metadata().await?;
                if !meta.is_file() {
                    return Err(StorageError::NotFound);
                }
                Ok((meta.len(), tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).boxed()))
            }
            Self::S3(s) => s.open(key).await,
        }
    }

    /// A location ffprobe can read: a local path, or a short-lived presigned URL of the object.
    pub async fn probe_location(&self, key: &str) -> Result<String, StorageError> {
        match self {
            Self::Local(l) => Ok(l.path_of(key)?.to_string_lossy().into_owned()),
            Self::S3(s) => s.presigned_get(key, PROBE_URL_TTL).await,
        }
    }

    /// The `url` of a media object (§5.3): served by the api for local storage; for S3 the
    /// public base URL when configured, otherwise a presigned GET URL made now.
    pub async fn public_url(&self, key: &str, public_base_url: &Url) -> Result<String, StorageError> {
        match self {
            Self::Local(_) => {
                let base = public_base_url.as_str().trim_end_matches('/');
                Ok(format!("{base}/media/{key}"))
            }
            Self::S3(s) => s.public_url(key).await,
        }
    }

    /// Writes a whole object from memory (stored ML answers); nothing is visible until it is
    /// complete.
    pub async fn put(&self, key: &str, content_type: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let mut upload = self.begin_upload(key, content_type).await?;
        for chunk in bytes.chunks(1024 * 1024) {
            if let Err(e) = upload.write(chunk).await {
                upload.abort().await;
                return Err(e);
            }
        }
        upload.finish().await.map(|_| ())
    }

    /// Reads a whole object of at most `limit` bytes.
    pub async fn read_all(&self, key: &str, limit: u64) -> Result<Vec<u8>, StorageError> {
        let (len, mut stream) = self.open(key).await?;
        if len > limit {
            return Err(StorageError::Remote(format!("object of {len} bytes is over the {limit}-byte limit")));
        }
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf)
    }

    /// Whether the store answers: the root directory exists, or the bucket can be reached.
    pub async fn check(&self) -> Result<(), StorageError> {
        match self {
            Self::Local(l) => match tokio::fs::metadata(l.root()).await {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(StorageError::NotFound),
                Err(e) => Err(e.into()),
            },
            Self::S3(s) => s.check().await,
        }
    }

    pub fn local(&self) -> Option<&LocalStorage> {
        match self {
            Self::Local(l) => Some(l),
            Self::S3(_) => None,
        }
    }
}

/// Where a model's answer for a run is kept: `results/<runId>/<model>.json`. Characters other than
/// letters, digits, `-`, `_` and `.` are replaced, and a model name that needed that gets a hash
/// suffix so that two names never share a key.
pub fn result_key(run_id: Uuid, model: &str) -> String {
    let safe: String =
        model.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') { c } else { '_' }).collect();
    if safe == model && !model.is_empty() {
        format!("results/{run_id}/{safe}.json")
    } else {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(model.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("results/{run_id}/{safe}-{hex}.json")
    }
}

/// The folder of a run's kept answers.
pub fn results_prefix(run_id: Uuid) -> String {
    format!("results/{run_id}")
}

/// Keys are relative paths of normal segments: no `..`, no absolute paths, no empty segments.
pub fn validate_key(key: &str) -> Result<&str, StorageError> {
    if key.is_empty() || key.len() > 900 || key.contains('\\') || key.contains('\0') || key.ends_with('/') {
        return Err(StorageError::InvalidKey);
    }
    let ok = key.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !ok || !Path::new(key).components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(StorageError::InvalidKey);
    }
    Ok(key)
}

/// Files below a root directory.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub async fn new(root: PathBuf) -> std::io::Result<Self> {
        tokio::fs::create_dir_all(&root).await?;
        let root = tokio::fs::canonicalize(&root).await?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a key to a path inside the root; `..`, absolute paths and empty segments are refused.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        Ok(self.root.join(validate_key(key)?))
    }

    /// Removes the partial files of uploads interrupted by a crash (`.<name>.<id>.part`) older
    /// than `older_than`; returns how many were removed.
    pub async fn sweep_partials(&self, older_than: Duration) -> std::io::Result<usize> {
        let mut removed = 0;
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            while let Some(entry) = entries.next_entry().await? {
                let meta = entry.metadata().await?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if meta.is_file() && name.starts_with('.') && name.ends_with(".part") {
                    let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
                    if age >= older_than && tokio::fs::remove_file(entry.path()).await.is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    async fn begin_upload(&self, key: &str) -> Result<Upload, StorageError> {
        let final_path = self.path_of(key)?;
        if let Some(parent) = final_path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let tmp_path = final_path.with_file_name(format!(
            ".{}.{}.part",
            final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            uuid::Uuid::new_v4().simple()
        ));
        let file = File::create(&tmp_path).await?;
        Ok(Upload { inner: UploadInner::Local(LocalUpload { file: Some(file), tmp_path, final_path, written: 0 }) })
    }

    async fn delete_dir(&self, prefix: &str) -> Result<usize, StorageError> {
        let dir = self.path_of(prefix)?;
        let mut count = 0;
        let mut dirs = vec![dir.clone()];
        while let Some(d) = dirs.pop() {
            let mut entries = match tokio::fs::read_dir(&d).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                if entry.file_type().await?.is_dir() {
                    dirs.push(entry.path());
                } else {
                    count += 1;
                }
            }
        }
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(count),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound),
            Err(e) => Err(e.into()),
        }
    }
}

/// An object being written. Every error path calls [`Upload::abort`]; a request cancelled
/// mid-body drops the upload instead, which removes the partial data as well.
pub struct Upload {
    inner: UploadInner,
}

enum UploadInner {
    Local(LocalUpload),
    S3(s3::S3Upload),
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        match &mut self.inner {
            UploadInner::Local(u) => u.write(chunk).await,
            UploadInner::S3(u) => u.write(chunk).await,
        }
    }

    pub fn written(&self) -> u64 {
        match &self.inner {
            UploadInner::Local(u) => u.written,
            UploadInner::S3(u) => u.written(),
        }
    }

    /// Makes the object visible under its key; returns its size.
    pub async fn finish(self) -> Result<u64, StorageError> {
        match self.inner {
            UploadInner::Local(u) => u.finish().await,
            UploadInner::S3(u) => u.finish().await,
        }
    }

    /// Removes the partial data.
    pub async fn abort(self) {
        match self.inner {
            UploadInner::Local(u) => u.abort().await,
            UploadInner::S3(u) => u.abort().await,
        }
    }
}

struct LocalUpload {
    file: Option<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    written: u64,
}

impl LocalUpload {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        if let Some(f) = self.file.as_mut() {
            f.write_all(chunk).await?;
            self.written += chunk.len() as u64;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, StorageError> {
        if let Some(mut f) = self.file.take() {
            f.flush().await?;
            f.sync_all().await?;
        }
        if let Err(e) = tokio::fs::rename(&self.tmp_path, &self.final_path).await {
            let _ = tokio::fs::remove_file(&self.tmp_path).await;
            return Err(e.into());
        }
        Ok(self.written)
    }

    async fn abort(mut self) {
        drop(self.file.take());
        if let Err(e) = tokio::fs::remove_file(&self.tmp_path).await {
            tracing::warn!(error = %e, "partial upload could not be removed");
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // A request cancelled mid-body drops the upload without reaching abort.
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = std::env::temp_dir().join(format!("storage-test-{}", uuid::Uuid::new_v4()));
        let s = LocalStorage::new(dir.clone()).await.expect("root");
        assert!(s.path_of("../etc/passwd").is_err());
        assert!(s.path_of("/etc/passwd").is_err());
        assert!(s.path_of("videos/../../x").is_err());
        assert!(s.path_of("videos/a.mp4").is_ok());
        let _ = tokio::fs::remove_dir_all(dir).await;
    }

    #[tokio::test]
    async fn aborted_uploads_leave_nothing_and_finished_ones_appear() {
        let dir = std::env::temp_dir().join(format!("storage-test-{}", uuid::Uuid::new_v4()));
        let storage = Storage::Local(LocalStorage::new(dir.clone()).await.expect("root"));
        let mut up = storage.begin_upload("images/a.png", "image/png").await.expect("begin");
        up.write(b"abc").await.expect("write");
        up.abort().await;
        assert!(!storage.exists("images/a.png").await.expect("exists"));
        let mut entries = tokio::fs::read_dir(dir.join("images")).await.expect("dir");
        assert!(entries.next_entry().await.expect("read").is_none());

        let mut up = storage.begin_upload("images/b.png", "image/png").await.expect("begin");
        up.write(b"abcd").await.expect("write");
        assert_eq!(up.finish().await.expect("finish"), 4);
        assert_eq!(storage.size("images/b.png").await.expect("size"), 4);
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
}
