//! A receive-only Socket.IO v5 client over Engine.IO v4 WebSocket (`docs/contract.md` §7.4).
//!
//! The server never needs anything from us but the handshake's `auth.token` and pongs, so the
//! client is small: open the WebSocket, read the Engine.IO open packet, send the namespace CONNECT
//! with the token, answer pings, and hand every `EVENT` packet over a channel. The maintained Rust
//! client crate (`rust_socketio`) speaks the same protocol but hard-depends on native-tls
//! (OpenSSL) and a second `tungstenite`/`reqwest` generation; everything else here is rustls.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

/// One server → client event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub payload: Value,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The WebSocket URL of the Socket.IO endpoint of a REST base URL.
pub fn socket_url(base: &Url) -> Result<Url, String> {
    let mut url = base.clone();
    let scheme = match base.scheme() {
        "https" => "wss",
        "http" => "ws",
        other => return Err(format!("unsupported scheme {other}")),
    };
    url.set_scheme(scheme).map_err(|_| "cannot make a WebSocket URL".to_string())?;
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}/socket.io/"));
    url.set_query(Some("EIO=4&transport=websocket"));
    Ok(url)
}

/// Connects and authenticates; events arrive on the receiver until the connection ends (then the
/// channel closes). The error is the server's `connect_error` message or the transport's.
pub async fn connect(base: &Url, token: &str) -> Result<mpsc::UnboundedReceiver<Event>, String> {
    let url = socket_url(base)?;
    let (mut ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;

    let handshake = async {
        // Engine.IO open packet: `0{"sid":…,"pingInterval":25000,"pingTimeout":20000,…}`.
        let open = next_text(&mut ws).await?;
        let open: Value = open
            .strip_prefix('0')
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| format!("unexpected first packet {open:?}"))?;
        let ping_ms = open["pingInterval"].as_u64().unwrap_or(25_000) + open["pingTimeout"].as_u64().unwrap_or(20_000);
        let connect = format!("40{}", serde_json::json!({ "token": token }));
        ws.send(Message::text(connect)).await.map_err(|e| e.to_string())?;
        loop {
            let packet = next_text(&mut ws).await?;
            if packet == "2" {
                ws.send(Message::text("3")).await.map_err(|e| e.to_string())?;
            } else if packet.starts_with("40") {
                return Ok(Duration::from_millis(ping_ms));
            } else if let Some(err) = packet.strip_prefix("44") {
                let v: Value = serde_json::from_str(err).unwrap_or(Value::Null);
                return Err(v["message"].as_str().unwrap_or(err).to_string());
            }
        }
    };
    let idle = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await.map_err(|_| "timed out".to_string())??;

    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // A server that sends no ping within interval + timeout is gone.
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(idle, ws.next()).await {
            let Message::Text(text) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let text = text.as_str();
            if text == "2" {
                if ws.send(Message::text("3")).await.is_err() {
                    break;
                }
            } else if text.starts_with("41") || text == "1" {
                break;
            } else if let Some(event) = parse_event(text)
                && tx.send(event).is_err()
            {
                break;
            }
        }
        let _ = ws.close(None).await;
    });
    Ok(rx)
}

async fn next_text<S>(ws: &mut S) -> Result<String, String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(_))) | None => return Err("the server closed the connection".into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
}

/// `42["name",payload]`, optionally with an ack id after the type (`42<id>[…]`).
fn parse_event(packet: &str) -> Option<Event> {
    let body = packet.strip_prefix("42")?;
    let body = body.trim_start_matches(|c: char| c.is_ascii_digit());
    let Value::Array(mut items) = serde_json::from_str(body).ok()? else { return None };
    if items.is_empty() {
        return None;
    }
    let payload = if items.len() > 1 { items.swap_remove(1) } else { Value::Null };
    let name = items.first()?.as_str()?.to_string();
    Some(Event { name, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_packets_are_parsed_and_others_ignored() {
        let e = parse_event(r#"42["run_finalized",{"mediaId":"m"}]"#).expect("event");
        assert_eq!(e.name, "run_finalized");
        assert_eq!(e.payload["mediaId"], "m");
        assert_eq!(parse_event(r#"4212["x",1]"#).map(|e| e.payload), Some(Value::from(1)));
        assert!(parse_event("2").is_none());
        assert!(parse_event(r#"43["x"]"#).is_none());
    }

    /// A server speaking just enough Engine.IO v4 / Socket.IO v5: it checks the token, pings
    /// faster than any event, and sends two events; `pongs` counts the client's answers.
    async fn fake_server(token: &'static str) -> (Url, tokio::task::JoinHandle<usize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = Url::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("url");
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("ws");
            let open = r#"0{"sid":"s1","upgrades":[],"pingInterval":50,"pingTimeout":200,"maxPayload":1000000}"#;
            ws.send(Message::text(open)).await.expect("open");
            let connect = next_text(&mut ws).await.expect("connect");
            let auth: Value = serde_json::from_str(connect.strip_prefix("40").expect("CONNECT")).expect("auth");
            if auth["token"] != token {
                let refusal = r#"44{"message":"Authentication error: Invalid token."}"#;
                ws.send(Message::text(refusal)).await.expect("refuse");
                return 0;
            }
            ws.send(Message::text(r#"40{"sid":"n1"}"#)).await.expect("connected");
            let mut pongs = 0;
            for _ in 0..3 {
                ws.send(Message::text("2")).await.expect("ping");
                if next_text(&mut ws).await.expect("pong") == "3" {
                    pongs += 1;
                }
            }
            ws.send(Message::text(r#"42["analysis_progress",{"mediaId":"m","progress":40}]"#)).await.expect("event");
            ws.send(Message::text(r#"42["run_finalized",{"mediaId":"m","finalStatus":"ANALYZED"}]"#)).await.expect("e");
            ws.send(Message::text("41")).await.expect("disconnect");
            pongs
        });
        (url, task)
    }

    #[tokio::test]
    async fn the_client_authenticates_answers_pings_and_delivers_events_until_the_server_leaves() {
        let (url, server) = fake_server("good").await;
        let mut rx = connect(&url, "good").await.expect("connected");
        let first = rx.recv().await.expect("event");
        assert_eq!((first.name.as_str(), first.payload["progress"].as_i64()), ("analysis_progress", Some(40)));
        assert_eq!(rx.recv().await.map(|e| e.name), Some("run_finalized".to_string()));
        assert!(rx.recv().await.is_none(), "the channel closes when the server disconnects");
        assert_eq!(server.await.expect("server"), 3);
    }

    #[tokio::test]
    async fn a_refused_handshake_is_the_servers_message() {
        let (url, _server) = fake_server("good").await;
        let err = connect(&url, "bad").await.expect_err("refused");
        assert_eq!(err, "Authentication error: Invalid token.");
    }

    #[test]
    fn the_socket_url_follows_the_rest_url() {
        let u = socket_url(&Url::parse("https://example.org/app").expect("url")).expect("ws");
        assert_eq!(u.as_str(), "wss://example.org/app/socket.io/?EIO=4&transport=websocket");
        let u = socket_url(&Url::parse("http://127.0.0.1:3000").expect("url")).expect("ws");
        assert_eq!(u.as_str(), "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket");
    }
}
