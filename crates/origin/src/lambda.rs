//! API Gateway events (through `lambda_http`) to the plain `http::Request<Bytes>` that
//! [`Origin::handle`] takes. Thin on purpose: the path is taken raw (as the visitor sent
//! it, without the stage), so decoding happens exactly once, in the origin.

use crate::body::OriginBody;
use crate::handler::Origin;
use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use percent_encoding::utf8_percent_encode;
use std::net::IpAddr;

/// The visitor's address as API Gateway saw it.
pub fn source_ip(req: &lambda_http::Request) -> Option<IpAddr> {
    let ip = match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(c) => c.http.source_ip.as_deref(),
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.as_deref(),
        _ => None,
    }?;
    ip.trim().parse().ok()
}

/// Converts a `lambda_http` request into the origin's request and the client address.
pub fn into_request(req: lambda_http::Request) -> (http::Request<Bytes>, Option<IpAddr>) {
    let ip = source_ip(&req);
    let raw = req.raw_http_path().to_owned();
    let (mut parts, body) = req.into_parts();
    let query = parts.uri.query().map(str::to_owned);
    if !raw.is_empty() {
        // Everything a URI cannot carry is escaped; `%` escapes, `\` and `..` are kept so
        // the origin judges the path itself.
        let mut pq = utf8_percent_encode(&raw, skyhost_rules::escape::RAW_PATH).to_string();
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            pq.push('?');
            pq.push_str(&q);
        }
        // Keep lambda_http's URI (it is already valid) when the raw path cannot be one.
        if let Ok(uri) = http::Uri::builder().path_and_query(pq).build() {
            parts.uri = uri;
        }
    }
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    (http::Request::from_parts(parts, body), ip)
}

/// Handles one API Gateway request.
pub async fn handle(
    origin: &Origin,
    req: lambda_http::Request,
) -> Result<http::Response<OriginBody>, std::convert::Infallible> {
    let (req, ip) = into_request(req);
    Ok(origin.handle(req, ip).await)
}
