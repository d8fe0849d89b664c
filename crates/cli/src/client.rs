//! The client side of the local API, used by every command except `init` and `up`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use starling_node::{Profile, ProfileDir};
use thiserror::Error;

use crate::api::ErrorBody;

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

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    dir: PathBuf,
}

impl Client {
    /// Finds the daemon of the profile in `dir`.
    pub fn for_profile(dir: &ProfileDir) -> Result<Self, ClientError> {
        let profile = Profile::open(dir.path())?;
        let endpoint = dir.endpoint().ok_or_else(|| ClientError::NoDaemon {
            dir: dir.path().to_path_buf(),
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        Ok(Self {
            http,
            base: format!("{}/api/v1", endpoint.url.trim_end_matches('/')),
            token: profile.dir.token()?,
            dir: dir.path().to_path_buf(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = match req.bearer_auth(&self.token).send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(ClientError::NoDaemon {
                    dir: self.dir.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.json().await?);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
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
        })
    }
}
