//! The files `edge new` writes, per language.

use super::Lang;

/// (relative path, contents) of every file of a new project.
pub(super) fn files(name: &str, lang: Lang, sdk: &str) -> Vec<(String, String)> {
    match lang {
        Lang::Rust => rust(name, sdk),
        Lang::Js | Lang::Ts => js(name, lang),
    }
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

/// The WIT world JavaScript functions are built against: wasi:http/proxy at the WASI version
/// componentize-js's engine (StarlingMonkey) implements, plus wasi:cli/environment for config.
const JS_WIT: &[(&str, &str)] = &[
    ("wit/world.wit", include_str!("../../../wit/js/world.wit")),
    (
        "wit/deps/cli.wit",
        include_str!("../../../wit/js/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../wit/js/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../wit/js/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../wit/js/deps/http.wit"),
    ),
    (
        "wit/deps/io.wit",
        include_str!("../../../wit/js/deps/io.wit"),
    ),
    (
        "wit/deps/random.wit",
        include_str!("../../../wit/js/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../wit/js/deps/sockets.wit"),
    ),
];

/// Pinned together: componentize-js 0.23.0 embeds a StarlingMonkey built against WASI 0.2.10
/// (the WIT above), and needs preview2-shim at run time without declaring it (0.26 breaks
/// its build). esbuild strips TypeScript.
const PACKAGES: &str = r#""dependencies": {
    "@bytecodealliance/componentize-js": "0.23.0",
    "@bytecodealliance/preview2-shim": "0.17.9",
    "esbuild": "0.28.2"
  }"#;

fn js(name: &str, lang: Lang) -> Vec<(String, String)> {
    let package = format!(
        r#"{{
  "name": "{name}",
  "private": true,
  "type": "module",
  "description": "An edge function: `edge dev` serves it locally, `edge build` makes the component",
  {PACKAGES}
}}
"#
    );
    let (file, source) = match lang {
        Lang::Ts => (
            "src/index.ts",
            JS_HANDLER
                .replace("(event)", "(event: FetchEvent)")
                .replace("(request)", "(request: Request): Promise<Response>")
                + "\nexport {};\n",
        ),
        _ => ("src/index.js", JS_HANDLER.to_owned()),
    };
    let mut files = vec![
        ("package.json".to_owned(), package),
        (file.to_owned(), source),
        (
            ".gitignore".to_owned(),
            "/node_modules\n/target\n".to_owned(),
        ),
    ];
    files.extend(
        JS_WIT
            .iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned())),
    );
    files
}

/// The handler a new JavaScript (or, typed, TypeScript) project starts with.
const JS_HANDLER: &str = r#"// An edge function in the fetch-event style: `edge dev` serves it on localhost and rebuilds
// on every save; `edge build` makes the component; `edge deploy` ships it to the fleet.
// Code at the top level runs once, when the component is built; per-request work belongs in
// the handler (so does reading configuration).
import { getEnvironment } from 'wasi:cli/environment@0.2.10';

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (url.pathname.startsWith('/hello/')) {
    return new Response(`hello, ${decodeURIComponent(url.pathname.slice(7))}\n`);
  }
  if (url.pathname === '/config') {
    return Response.json(Object.fromEntries(getEnvironment()));
  }
  return new Response('hello from the edge\n', {
    headers: { 'content-type': 'text/plain; charset=utf-8' },
  });
}
"#;
