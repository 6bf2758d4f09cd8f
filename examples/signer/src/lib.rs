//! Signs tokens with a secret: `POST /sign` with a JSON object of claims answers a JSON Web
//! Token (HS256) signed with the `SIGNING_KEY` secret (`edge secrets put signer SIGNING_KEY`;
//! in a routes file, `env`), valid for `TOKEN_TTL_SECS` (default 3600); `POST /verify` with a
//! token answers its claims, or 401. The key never leaves the function.
//!
//! - `POST /sign` `{"sub": "ada"}` → `{"token": "eyJ..."}`
//! - `POST /verify` `eyJ...` → `{"sub": "ada", "iat": ..., "exp": ...}` or 401
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use edge::http::StatusCode;
use edge::{Request, Response, Router};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

fn key() -> edge::Result<Hmac<Sha256>> {
    let secret = edge::config::require("SIGNING_KEY")?;
    Ok(Hmac::<Sha256>::new_from_slice(secret.as_bytes())?)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn error(status: StatusCode, message: &str) -> edge::Result<Response> {
    let mut response = edge::json(&serde_json::json!({ "error": message }))?;
    *response.status_mut() = status;
    Ok(response)
}

fn sign(request: Request) -> edge::Result<Response> {
    let Ok(serde_json::Value::Object(mut claims)) = request.into_body().json_as() else {
        return error(
            StatusCode::BAD_REQUEST,
            "send a JSON object of claims, like {\"sub\": \"ada\"}",
        );
    };
    let ttl: u64 = edge::config::get("TOKEN_TTL_SECS")
        .and_then(|t| t.parse().ok())
        .unwrap_or(3600);
    let issued = now();
    claims.insert("iat".into(), issued.into());
    claims.insert("exp".into(), (issued + ttl).into());
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(&claims)?);
    let mut mac = key()?;
    mac.update(format!("{header}.{payload}").as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    edge::json(&serde_json::json!({ "token": format!("{header}.{payload}.{signature}") }))
}

fn verify(request: Request) -> edge::Result<Response> {
    let token = request.into_body().text()?;
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return error(
            StatusCode::UNAUTHORIZED,
            "not a token (three dot-separated parts)",
        );
    };
    let mut mac = key()?;
    mac.update(format!("{header}.{payload}").as_bytes());
    let Ok(signature) = B64.decode(signature) else {
        return error(StatusCode::UNAUTHORIZED, "the signature is not base64url");
    };
    if mac.verify_slice(&signature).is_err() {
        return error(StatusCode::UNAUTHORIZED, "bad signature");
    }
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(payload)?)?;
    if claims["exp"].as_u64().is_none_or(|exp| exp < now()) {
        return error(StatusCode::UNAUTHORIZED, "expired");
    }
    edge::json(&claims)
}

fn handle(request: Request) -> edge::Result<Response> {
    Router::new()
        .post("/sign", sign)
        .post("/verify", verify)
        .handle(request)
}

edge::export!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str, body: &str) -> (u16, serde_json::Value) {
        let request = edge::http::Request::post(path)
            .body(body.to_owned().into())
            .unwrap();
        let response = edge::testing::call(handle, request);
        (
            response.status().as_u16(),
            response.into_body().json_as().unwrap(),
        )
    }

    #[test]
    fn signs_and_verifies_with_the_secret() {
        edge::testing::set_config("SIGNING_KEY", "k1");
        let (status, signed) = post("/sign", r#"{"sub": "ada"}"#);
        assert_eq!(status, 200);
        let token = signed["token"].as_str().unwrap().to_owned();
        let (status, claims) = post("/verify", &token);
        assert_eq!((status, claims["sub"].as_str()), (200, Some("ada")));
        // Another key: refused.
        edge::testing::set_config("SIGNING_KEY", "k2");
        assert_eq!(post("/verify", &token).0, 401);
        assert_eq!(post("/sign", "[1]").0, 400);
    }
}
