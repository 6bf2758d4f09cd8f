//! The files `edge new` writes, per language.

use std::path::Path;

use super::Lang;

/// (relative path, contents) of every file of a new project.
pub(super) fn files(name: &str, lang: Lang, sdk: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(match lang {
        Lang::Rust => rust(name, sdk),
        Lang::Js | Lang::Ts => js(name, lang),
    })
}

fn rust(name: &str, sdk: &str) -> Vec<(String, String)> {
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# A component: what `edge build` turns into {crate_name}.wasm.
crate-type = ["cdylib"]

[dependencies]
edge-sdk = {sdk}

[profile.release]
strip = true

# A function is a project of its own, wherever it is created.
[workspace]
"#,
        crate_name = name.replace('-', "_"),
    );
    let lib = r#"//! An edge function: `edge dev` serves it on localhost and rebuilds on every save;
//! `edge build` makes the component; `edge deploy` ships it to the fleet.
use edge::{Request, RequestExt as _, Response, Router};

fn handle(request: Request) -> edge::Result<Response> {
    Router::new()
        .get("/", |_| edge::text("hello from the edge\n"))
        .get("/hello/:name", |request: Request| {
            edge::text(format!("hello, {}\n", request.param("name").unwrap_or("you")))
        })
        .handle(request)
}

edge::export!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name() {
        let request = edge::http::Request::get("/hello/ada").body(().into()).unwrap();
        let response = edge::testing::call(handle, request);
        assert_eq!(response.into_body().text().unwrap(), "hello, ada\n");
    }
}
"#;
    vec![
        ("Cargo.toml".into(), cargo),
        ("src/lib.rs".into(), lib.into()),
        (".gitignore".into(), "/target\n".into()),
    ]
}

fn js(_name: &str, _lang: Lang) -> Vec<(String, String)> {
    Vec::new()
}

pub(super) fn build_js(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    anyhow::bail!("{}: JavaScript projects cannot be built yet", dir.display())
}
