//! The client side of the local API, used by every command except `init` and `up`,
//! and by the [`kit`](crate::kit) (devnet, the benchmark harness, the tests).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use starling_node::{Profile, ProfileDir};
use thiserror::Error;

use crate::api::ErrorBody;

/// How long one call may take (the event stream excepted).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no daemon running for this profile ({dir}): start one with `starling up`")]
    NoDaemon { dir: PathBuf },
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("talking to the daemon failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Profile(#[from] starling_node::ProfileError),
}

/// A client of one daemon's `/api/v1`; cheap to clone. Paths are relative to
/// `/api/v1` (`"/status"`).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    dir: PathBuf,
}

impl Client {
    /// Finds the daemon of the profile in `dir`: the one holding its lock, where it
    /// said it listens ([`ProfileDir::running_endpoint`]). A stale `api.json` (a
    /// daemon killed) is no daemon: whatever listens on its port now never sees the
    /// token.
    pub fn for_profile(dir: &ProfileDir) -> Result<Self, ClientError> {
        let profile = Profile::open(dir.path())?;
        let endpoint = dir
            .running_endpoint()
            .ok_or_else(|| ClientError::NoDaemon {
                dir: dir.path().to_path_buf(),
            })?;
        Self::new(dir, &endpoint.url, profile.dir.token()?)
    }

    /// A client of the daemon of `dir` listening at `url` (`http://127.0.0.1:PORT`).
    pub fn new(dir: &ProfileDir, url: &str, token: String) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        Ok(Self {
            http,
            base: format!("{}/api/v1", url.trim_end_matches('/')),
            token,
            dir: dir.path().to_path_buf(),
        })
    }

    /// `GET path`, the answer decoded; an error answer is [`ClientError::Api`].
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(self.send(Method::GET, path, None::<&()>).await?).await
    }

    /// `POST path` with a JSON body, the answer decoded; an error answer is
    /// [`ClientError::Api`].
    pub async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        decode(self.send(Method::POST, path, Some(body)).await?).await
    }

    /// Any call, answered with its status and JSON body (`null` when it has none),
    /// whatever the status: for checking the API's answers themselves.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Opens the server-sent event stream (`/events`); it has no time limit.
    pub async fn events(&self) -> Result<reqwest::Response, ClientError> {
        let req = self.request(Method::GET, "/events");
        let resp = self.connect(req).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(api_error(resp).await)
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.request(method, path).timeout(CALL_TIMEOUT);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.connect(req).await
    }

    async fn connect(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        match req.send().await {
            Ok(r) => Ok(r),
            Err(e) if e.is_connect() => Err(ClientError::NoDaemon {
                dir: self.dir.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    if resp.status().is_success() {
        Ok(resp.json().await?)
    } else {
        Err(api_error(resp).await)
    }
}

async fn api_error(resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => ClientError::Api {
            status: status.as_u16(),
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: "http".into(),
            message: format!("daemon answered {status}: {text}"),
        },
    }
}
