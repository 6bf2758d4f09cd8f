//! The control plane's API as the CLI uses it: one client, JSON bodies, and every refusal
//! turned into a message that says what to do.

use std::time::Duration;

use anyhow::{Context as _, bail};
use edge_wire::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A client for one control plane and token.
pub(crate) struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    pub(crate) fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            bail!(
                "no API token; pass --token TOKEN or set EDGE_TOKEN (the control plane wrote its admin token to admin-token in its data dir)"
            );
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let request = self.request(reqwest::Method::POST, path).json(body);
        self.send(request).await
    }

    /// Sends `request` and decodes a success, or explains the failure.
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("the control plane's answer broke off ({status})"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
            bail!(refusal(status.as_u16(), &message));
        }
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "the control plane's answer is not what this `edge` expects; are they the same version? ({})",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )
        })
    }

    pub(crate) fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot reach the control plane at {}: {e}; start it with `edge-control-plane serve`, or pass --api URL (or set EDGE_API)",
            self.base
        )
    }
}

fn refusal(status: u16, message: &str) -> String {
    match status {
        401 => format!(
            "the control plane refused the token ({message}); pass a valid one with --token or EDGE_TOKEN"
        ),
        403 => format!(
            "the token may not do this ({message}); an admin can make one that may: `edge tokens create --scope deploy`"
        ),
        _ => format!("{message} ({status})"),
    }
}
