//! The AWS SDK's HTTP connector: one per process, shared by every service client.
//!
//! The SDK's default client builds and throws away a whole TLS connector when each
//! service client is constructed (to load the system trust store early) and builds
//! another for the first request: three clients cost the origin ~4 ms of init. In Lambda
//! skyhost hands the SDK a hyper client on [`crate::tls::client_config`] instead: rustls
//! on aws-lc with Mozilla's roots compiled in as parsed trust anchors, so there is
//! nothing to read or parse at init. Elsewhere (the CLI on a developer's machine) it uses
//! the SDK's own connector on the system store, where a company proxy's CA may live.

use crate::tls::Roots;
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::error::Error as StdError;
use std::time::Duration;

/// The connect timeout of the SDK's latest behaviour version.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// How long an idle pooled connection is kept (the SDK's default).
const POOL_IDLE: Duration = Duration::from_secs(90);

type BoxError = Box<dyn StdError + Send + Sync>;

/// The SDK's HTTP client: the same connector (and connection pool) for every call.
#[derive(Debug, Clone)]
pub struct SharedConnectorClient {
    connector: SharedHttpConnector,
}

impl SharedConnectorClient {
    /// Builds the connector for `roots`.
    pub fn new(roots: Roots) -> Result<SharedConnectorClient, crate::config::ConfigError> {
        let connector = match roots {
            Roots::Compiled => SharedHttpConnector::new(HyperConnector::new()),
            Roots::Native => {
                let tls = TlsContext::builder()
                    .with_trust_store(TrustStore::default())
                    .build()
                    .map_err(|e| crate::config::ConfigError(format!("TLS context: {e}")))?;
                let settings = HttpConnectorSettings::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build();
                SharedHttpConnector::new(
                    aws_smithy_http_client::Connector::builder()
                        .connector_settings(settings)
                        .sleep_impl(TokioSleep::new())
                        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                        .tls_context(tls)
                        .build(),
                )
            }
        };
        Ok(SharedConnectorClient { connector })
    }
}

impl HttpClient for SharedConnectorClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector.clone()
    }
}

/// HTTP/1.1 over rustls with compiled-in roots, plain HTTP for emulator endpoints.
#[derive(Debug, Clone)]
struct HyperConnector {
    client: Client<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>,
}

impl HyperConnector {
    fn new() -> HyperConnector {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(https);
        HyperConnector { client }
    }
}

impl HttpConnector for HyperConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let fut = self.client.request(request);
        HttpConnectorFuture::new(async move {
            match fut.await {
                Ok(resp) => HttpResponse::try_from(resp.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(Box::new(e))),
            }
        })
    }
}

fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Sorts a failed call the way the SDK's own connector does, so its retry policy treats
/// ours alike: failures to connect, I/O errors and closed connections are retryable I/O,
/// a connection that ended mid-response is transient, a request hyper refused is the
/// caller's.
fn classify(err: BoxError) -> ConnectorError {
    if let Some(h) = find::<hyper::Error>(err.as_ref()) {
        if h.is_timeout() {
            return ConnectorError::timeout(err);
        }
        if h.is_user() {
            return ConnectorError::user(err);
        }
        if h.is_closed() || h.is_canceled() || find::<std::io::Error>(h).is_some() {
            return ConnectorError::io(err);
        }
        if h.is_incomplete_message() {
            return ConnectorError::other(err, Some(ErrorKind::TransientError));
        }
        return ConnectorError::other(err, None);
    }
    if let Some(e) = find::<hyper_util::client::legacy::Error>(err.as_ref()) {
        if e.is_connect() || find::<std::io::Error>(e).is_some() {
            return ConnectorError::io(err);
        }
    }
    ConnectorError::other(err, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn request(method: http::Method, url: String, body: SdkBody) -> HttpRequest {
        HttpRequest::try_from(
            http::Request::builder()
                .method(method)
                .uri(url)
                .body(body)
                .unwrap(),
        )
        .unwrap()
    }

    /// A server that reads one request, writes `answer` (possibly nothing) and hangs up.
    async fn one_shot(answer: &'static [u8]) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_refused_connection_is_retryable_io() {
        // A port nothing listens on: bind, note it, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/");
        let err = HyperConnector::new()
            .call(request(http::Method::GET, url, SdkBody::empty()))
            .await
            .unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_transient() {
        let addr = one_shot(b"").await;
        let url = format!("http://{addr}/");
        let err = HyperConnector::new()
            .call(request(http::Method::GET, url, SdkBody::empty()))
            .await
            .unwrap_err();
        assert!(
            err.is_io() || err.as_other() == Some(ErrorKind::TransientError),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn answers_come_through() {
        let addr = one_shot(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello").await;
        let url = format!("http://{addr}/");
        let resp = HyperConnector::new()
            .call(request(http::Method::PUT, url, SdkBody::from("x")))
            .await
            .expect("an answer");
        assert_eq!(resp.status().as_u16(), 201);
        let body = aws_smithy_types::byte_stream::ByteStream::new(resp.into_body())
            .collect()
            .await
            .expect("the whole body")
            .into_bytes();
        assert_eq!(&body[..], b"hello");
    }
}
