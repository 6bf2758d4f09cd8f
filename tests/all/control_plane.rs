//! The control plane's API end to end: a real `edge-control-plane` process, a real client.

mod access;
mod deploy;
mod state;

use std::time::Duration;

use edge_tests::ControlPlaneProcess;
use reqwest::Method;
use serde_json::Value;

/// A client of one control plane, with one token (or none).
struct Api {
    url: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// A status, the headers and the body of an answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    /// The body as JSON of type `T`.
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}, body {:?} is not the expected JSON: {e}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` of an error answer, after checking its status.
    fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let body: edge_wire::ErrorBody = self.json();
        body.error
    }

    /// Checks the answer is 200 and returns its JSON.
    fn ok<T: serde::de::DeserializeOwned>(&self) -> T {
        assert_eq!(
            self.status,
            200,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }
}

impl Api {
    fn new(cp: &ControlPlaneProcess, token: Option<&str>) -> Api {
        Api {
            url: cp.url().to_owned(),
            token: token.map(str::to_owned),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// The same control plane with another token.
    fn with(&self, token: &str) -> Api {
        Api {
            url: self.url.clone(),
            token: Some(token.to_owned()),
            client: self.client.clone(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    async fn json(&self, method: Method, path: &str, body: Value) -> Answer {
        self.send(method, path, Some(body.to_string().into_bytes()))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.json(Method::POST, path, body).await
    }

    /// Uploads `bytes` as a component.
    async fn upload(&self, bytes: &[u8]) -> Answer {
        self.send(Method::PUT, "/v1/components", Some(bytes.to_vec()))
            .await
    }

    /// Uploads the guest `name` and deploys it as a new version of `function` with `routes`;
    /// returns the revision and version.
    async fn deploy(&self, guest: &str, function: &str, routes: Value) -> (u64, u32) {
        let bytes = std::fs::read(edge_tests::guest(guest)).unwrap();
        let uploaded: edge_wire::Uploaded = self.upload(&bytes).await.ok();
        let changed: edge_wire::Changed = self
            .post(
                &format!("/v1/functions/{function}/versions"),
                serde_json::json!({ "digest": uploaded.digest, "routes": routes }),
            )
            .await
            .ok();
        (changed.revision, changed.version.unwrap())
    }

    /// Creates a token of `scope`; returns its secret.
    async fn token(&self, scope: &str) -> String {
        let token: edge_wire::TokenInfo = self
            .post(
                "/v1/tokens",
                serde_json::json!({ "scope": scope, "name": scope }),
            )
            .await
            .ok();
        token.token.unwrap()
    }

    async fn revision(&self) -> u64 {
        let body: Value = self.get("/v1/revision").await.ok();
        body["revision"].as_u64().unwrap()
    }
}

/// sha256 of `bytes`, lowercase hex.
fn sha256(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}
