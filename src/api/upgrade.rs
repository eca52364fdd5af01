//! Switching a request to a WebSocket, for the streaming subresources (`pods/exec`,
//! `pods/attach`, `pods/portforward`): checking the upgrade request, the `101 Switching
//! Protocols` answer with the chosen subprotocol, and handing the upgraded connection (as
//! a tokio-tungstenite WebSocket) to the session that serves it.
//!
//! The session runs in its own task once hyper gives up the connection (after the 101
//! is written), so errors a client should see as HTTP answers must be found before
//! [`accept_websocket`] is called.

use std::future::Future;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::body::Body;
use super::status::{ApiError, ApiResult};

/// The server side of an upgraded connection.
pub type WebSocket = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The subprotocols a WebSocket upgrade request offers (in its order), or `None` when the
/// request is not a WebSocket upgrade.
pub fn websocket_protocols(headers: &HeaderMap) -> Option<Vec<String>> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade
        .split(',')
        .any(|u| u.trim().eq_ignore_ascii_case("websocket"))
    {
        return None;
    }
    Some(
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
    )
}

/// Answer the upgrade with `protocol` and run `session` on the WebSocket once the
/// connection is handed over. Fails (as a 400) when the request lacks the handshake
/// headers or the connection cannot be upgraded (HTTP/2).
pub fn accept_websocket<B, F, Fut>(
    req: &mut Request<B>,
    protocol: &str,
    session: F,
) -> ApiResult<Response<Body>>
where
    F: FnOnce(WebSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::BadRequest("missing Sec-WebSocket-Key header".into()))?;
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| {
            ApiError::BadRequest(
                "this connection cannot be upgraded to a WebSocket (HTTP/1.1 is required)".into(),
            )
        })?;
    let protocol_value = HeaderValue::from_str(protocol)
        .map_err(|e| ApiError::Internal(format!("subprotocol {protocol:?}: {e}")))?;
    let accept_value = HeaderValue::from_str(&accept)
        .map_err(|e| ApiError::Internal(format!("Sec-WebSocket-Accept: {e}")))?;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(WebSocketConfig::default()),
        )
        .await;
        session(ws).await;
    });
    let mut resp = Response::new(super::body::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_value);
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol_value);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_subprotocols_are_read_in_order() {
        let mut h = HeaderMap::new();
        assert_eq!(websocket_protocols(&h), None);
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
        );
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64.channel.k8s.io"),
        );
        assert_eq!(
            websocket_protocols(&h).expect("a websocket upgrade"),
            [
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "base64.channel.k8s.io"
            ]
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert_eq!(websocket_protocols(&h), None);
    }
}
