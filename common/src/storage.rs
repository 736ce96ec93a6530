//! Where media files live. One interface for the api (uploads, serving, deletion) and the
//! activities (probing, streaming to the ML server).

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures::Stream;
use tokio::fs::File;
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::config::StorageConfig;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found")]
    NotFound,
    #[error("invalid storage key")]
    InvalidKey,
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The configured store.
#[derive(Debug, Clone)]
pub enum Storage {
    Local(LocalStorage),
}

impl Storage {
    pub async fn from_config(cfg: &StorageConfig) -> anyhow::Result<Self> {
        match cfg {
            StorageConfig::Local { root } => Ok(Self::Local(LocalStorage::new(root.clone()).await?)),
            StorageConfig::S3(_) => anyhow::bail!("STORAGE_PROVIDER=s3 is not available in this build"),
        }
    }

    /// Starts writing a new object; nothing is visible under `key` until [`Upload::finish`].
    pub async fn begin_upload(&self, key: &str) -> Result<Upload, StorageError> {
        match self {
            Self::Local(l) => l.begin_upload(key).await,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Self::Local(l) => l.delete(key).await,
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self {
            Self::Local(l) => Ok(tokio::fs::try_exists(l.path_of(key)?).await?),
        }
    }

    /// Size of a stored object.
    pub async fn size(&self, key: &str) -> Result<u64, StorageError> {
        match self {
            Self::Local(l) => match tokio::fs::metadata(l.path_of(key)?).await {
                Ok(m) => Ok(m.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Streams an object's bytes.
    pub async fn read_stream(
        &self,
        key: &str,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, StorageError> {
        match self {
            Self::Local(l) => {
                let file = match File::open(l.path_of(key)?).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound),
                    Err(e) => return Err(e.into()),
                };
                Ok(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024))
            }
        }
    }

    /// A location ffprobe can read: a local path (or, for remote stores, a URL).
    pub async fn probe_location(&self, key: &str) -> Result<String, StorageError> {
        match self {
            Self::Local(l) => Ok(l.path_of(key)?.to_string_lossy().into_owned()),
        }
    }

    /// The `url` of a media object (§5.3).
    pub fn public_url(&self, key: &str, public_base_url: &Url) -> String {
        match self {
            Self::Local(_) => {
                let base = public_base_url.as_str().trim_end_matches('/');
                format!("{base}/media/{key}")
            }
        }
    }

    pub fn local(&self) -> Option<&LocalStorage> {
        match self {
            Self::Local(l) => Some(l),
        }
    }
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
        if key.is_empty() || key.contains('\\') || key.contains('\0') {
            return Err(StorageError::InvalidKey);
        }
        let rel = Path::new(key);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StorageError::InvalidKey);
        }
        Ok(self.root.join(rel))
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
        Ok(Upload { file: Some(file), tmp_path, final_path, written: 0 })
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound),
            Err(e) => Err(e.into()),
        }
    }
}

/// An object being written. Dropping it without [`Upload::finish`] leaves nothing behind once
/// [`Upload::abort`] ran; callers abort explicitly on every error path.
pub struct Upload {
    file: Option<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    written: u64,
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        if let Some(f) = self.file.as_mut() {
            f.write_all(chunk).await?;
            self.written += chunk.len() as u64;
        }
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the object visible under its key; returns its size.
    pub async fn finish(mut self) -> Result<u64, StorageError> {
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

    /// Removes the partial data.
    pub async fn abort(mut self) {
        drop(self.file.take());
        if let Err(e) = tokio::fs::remove_file(&self.tmp_path).await {
            tracing::warn!(error = %e, "partial upload could not be removed");
        }
    }
}

impl Drop for Upload {
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
        let mut up = storage.begin_upload("images/a.png").await.expect("begin");
        up.write(b"abc").await.expect("write");
        up.abort().await;
        assert!(!storage.exists("images/a.png").await.expect("exists"));
        let mut entries = tokio::fs::read_dir(dir.join("images")).await.expect("dir");
        assert!(entries.next_entry().await.expect("read").is_none());

        let mut up = storage.begin_upload("images/b.png").await.expect("begin");
        up.write(b"abcd").await.expect("write");
        assert_eq!(up.finish().await.expect("finish"), 4);
        assert_eq!(storage.size("images/b.png").await.expect("size"), 4);
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
}
