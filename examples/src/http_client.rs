//! A plain HTTP/1 client (hyper) for the demo and the end-to-end tests.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::RETRY_AFTER;
use hyper::StatusCode;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Any failure of a request: connection, protocol, or a body that broke off.
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP client over plain TCP. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Empty<Bytes>>,
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The body, as text.
    pub body: String,
}

/// A response whose body is read piece by piece as it arrives.
#[derive(Debug)]
pub struct StreamingReply {
    /// The status.
    pub status: StatusCode,
    body: Incoming,
}

impl StreamingReply {
    /// The next piece of the body as it came off the wire, or `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<String>, ClientError> {
        while let Some(frame) = self.body.frame().await {
            if let Ok(data) = frame?.into_data() {
                return Ok(Some(String::from_utf8_lossy(&data).into_owned()));
            }
        }
        Ok(None)
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with its own connection pool.
    pub fn new() -> Self {
        Self {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET url`, reading the whole body.
    pub async fn get(&self, url: &str) -> Result<Reply, ClientError> {
        let response = self.inner.get(url.parse()?).await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// `GET url`, returning once the response head is in.
    pub async fn open(&self, url: &str) -> Result<StreamingReply, ClientError> {
        let response = self.inner.get(url.parse()?).await?;
        Ok(StreamingReply {
            status: response.status(),
            body: response.into_body(),
        })
    }
}
