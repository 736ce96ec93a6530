//! Shared state of the api process.

use std::sync::Arc;

use drishtiksha_common::config::ApiConfig;
use drishtiksha_common::db::media::Media;
use drishtiksha_common::events::EventPublisher;
use drishtiksha_common::reconcile::Reconciler;
use drishtiksha_common::redis_conn::RedisHandle;
use drishtiksha_common::storage::Storage;
use drishtiksha_ml::MlClient;
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::auth::jwt::JwtKeys;
use crate::views;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ApiConfig>,
    pub db: PgPool,
    pub redis: RedisHandle,
    pub events: EventPublisher,
    pub storage: Storage,
    pub jwt: Arc<JwtKeys>,
    pub ml: MlClient,
    /// This process's Socket.IO sockets and their outboxes.
    pub sockets: crate::realtime::outbox::Outboxes,
    temporal: Arc<OnceCell<temporalio_client::Client>>,
}

impl AppState {
    pub fn new(config: ApiConfig, db: PgPool, redis: RedisHandle, storage: Storage) -> anyhow::Result<Self> {
        let ml = MlClient::new(&config.common.ml)?;
        let jwt = Arc::new(JwtKeys::new(config.jwt_secret.expose().as_bytes(), config.jwt_expires_in));
        let events = EventPublisher::new(redis.clone(), config.common.progress_channel.clone());
        Ok(Self {
            config: Arc::new(config),
            db,
            redis,
            events,
            storage,
            jwt,
            ml,
            sockets: Default::default(),
            temporal: Default::default(),
        })
    }

    /// The media as served now, with its `url` as it is served now (§5.3): for S3 without a
    /// public base URL this is a fresh presigned URL, so a stored one never goes stale.
    pub async fn view(&self, media: Media) -> views::Media {
        let mut view = views::Media::from(media);
        match self.storage.public_url(&view.storage_key, &self.config.common.public_base_url).await {
            Ok(url) => view.url = url,
            Err(e) => tracing::warn!(media.id = %view.id, error = %e, "media URL not generated"),
        }
        view
    }

    pub async fn views(&self, media: Vec<Media>) -> Vec<views::Media> {
        let mut out = Vec::with_capacity(media.len());
        for m in media {
            out.push(self.view(m).await);
        }
        out
    }

    /// The run reconciler, for the maintenance endpoints.
    pub async fn reconciler(&self) -> anyhow::Result<Reconciler> {
        let mut reconciler = Reconciler::new(self.db.clone(), self.temporal().await?, self.events.clone());
        reconciler.start_on = Some(self.config.common.temporal.task_queue.clone());
        Ok(reconciler)
    }

    /// The Temporal client, connected on first use so that the api starts (and answers
    /// `/api/ready` truthfully) while Temporal is still coming up.
    pub async fn temporal(&self) -> anyhow::Result<temporalio_client::Client> {
        let client = self
            .temporal
            .get_or_try_init(|| async {
                drishtiksha_common::temporal::connect(
                    &self.config.common.temporal,
                    &drishtiksha_common::temporal::identity("api"),
                )
                .await
            })
            .await?;
        Ok(client.clone())
    }
}
