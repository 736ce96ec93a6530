//! Live progress (§7): the Socket.IO server on the api's port and the listener that relays the
//! Redis progress channel to the sockets of the user each message names.

mod listener;
pub mod outbox;
mod relay;

use std::time::Duration;

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::state::AppState;

pub use listener::spawn_listener;

/// The two rooms of a user; every event goes to their union, so each socket gets it once.
pub fn user_rooms(user_id: &str) -> [String; 2] {
    [user_id.to_string(), format!("user:{user_id}")]
}

#[derive(Debug)]
struct HandshakeError(&'static str);

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

fn token_of(auth: &Result<Value, impl std::fmt::Debug>) -> Option<&str> {
    auth.as_ref().ok()?.get("token")?.as_str().filter(|t| !t.is_empty())
}

/// Handshake (§7.4): token only from `auth.token`; the user must exist and be active.
async fn authenticate(TryData(auth): TryData<Value>, State(state): State<AppState>) -> Result<(), HandshakeError> {
    let token = token_of(&auth).ok_or(HandshakeError("Authentication error: No token provided."))?;
    match crate::auth::load_session(&state, token).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(crate::auth::SessionError::Revoked)) | Err(ApiError { status: StatusCode::UNAUTHORIZED, .. }) => {
            Err(HandshakeError("Authentication error: Invalid token."))
        }
        Ok(Err(crate::auth::SessionError::NoUser)) => {
            Err(HandshakeError("Authentication error: User not found or inactive."))
        }
        Err(e) => {
            tracing::warn!(error = ?e.source, "socket handshake could not load the user");
            Err(HandshakeError("Authentication error: User not found or inactive."))
        }
    }
}

async fn on_connect(socket: SocketRef, TryData(auth): TryData<Value>, State(state): State<AppState>) {
    // The middleware verified this token a moment ago.
    let Some(user_id) = token_of(&auth).and_then(|t| state.jwt.verify(t).ok()) else {
        socket.disconnect().ok();
        return;
    };
    // The outbox exists before the socket is in a room, so no event for it can miss one.
    state.sockets.open(&socket, state.config.socket_progress_window);
    socket.join(user_rooms(&user_id.to_string()));
    drishtiksha_common::metrics::SOCKET_CONNECTIONS.inc();
    let sockets = state.sockets.clone();
    socket.on_disconnect(async move |s: SocketRef| {
        sockets.close(s.id);
        drishtiksha_common::metrics::SOCKET_CONNECTIONS.dec();
    });
    tracing::debug!(user.id = %user_id, socket.id = %socket.id, "socket connected");
}

/// Largest message a client may send (§7.4: 1 MB): the polling payload limit, and the WebSocket
/// message limit the server enforces on the connection (see `server::ws_guard`).
pub const MAX_MESSAGE: u64 = 1_000_000;

/// The Socket.IO layer (path `/socket.io`, Engine.IO v4, polling and WebSocket).
pub fn layer(state: AppState) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .req_path("/socket.io")
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .max_payload(MAX_MESSAGE)
        // Sized for a burst of outcomes of many runs of one user (socketioxide's default is 128);
        // the outbox absorbs anything beyond.
        .max_buffer_size(state.config.socket_buffer)
        .with_state(state)
        .build_layer();
    io.ns("/", on_connect.with(authenticate));
    (layer, io)
}
