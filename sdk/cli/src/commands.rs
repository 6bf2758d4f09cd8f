//! What each subcommand does. Output for people goes to stdout; progress to stderr.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use edge_wire::{
    Changed, FunctionInfo, Limits, NewToken, NewVersion, NodeInfo, Rollback, Route, Scope,
    SetCanary, TokenInfo, Uploaded, paths,
};
use futures::StreamExt as _;

use crate::api::Api;

/// Upload chunk size: small enough for a smooth progress line.
const CHUNK: usize = 64 << 10;
/// How often convergence is checked.
const POLL: Duration = Duration::from_millis(25);

/// What `edge deploy` was asked to do.
pub(crate) struct Deploy<'a> {
    pub(crate) file: &'a Path,
    pub(crate) name: &'a str,
    pub(crate) routes: &'a [String],
    /// The routes are cached by the nodes.
    pub(crate) cache: bool,
    pub(crate) env: &'a [String],
    /// A file of KEY=VALUE lines, read before `env`.
    pub(crate) env_file: Option<&'a Path>,
    /// Origins the function may reach.
    pub(crate) outbound: &'a [String],
    /// KV namespaces it may open.
    pub(crate) kv: &'a [String],
    pub(crate) limits: Limits,
    pub(crate) wait: Option<Duration>,
}

/// Uploads, deploys and (unless told not to) waits for the fleet; the version deployed.
pub(crate) async fn deploy(api: &Api, args: Deploy<'_>) -> anyhow::Result<u32> {
    let bytes =
        std::fs::read(args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    // The control plane checks again; checking here saves uploading something it will refuse.
    edge_wire::check_component(&bytes).with_context(|| format!("{}", args.file.display()))?;
    let routes = args
        .routes
        .iter()
        .map(|spec| {
            Route::parse(spec, args.name)
                .map(|route| Route {
                    cache: args.cache,
                    ..route
                })
                .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut env = match args.env_file {
        Some(path) => env_file(path)?,
        None => BTreeMap::new(),
    };
    for pair in args.env {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.insert(k.to_owned(), v.to_owned()),
            _ => bail!("--env {pair:?}: write KEY=VALUE"),
        };
    }
    for namespace in args.kv {
        edge_wire::kv::check_namespace(namespace)
            .map_err(|e| anyhow::anyhow!("--kv {namespace:?}: {e}"))?;
    }
    for pattern in args.outbound {
        edge_wire::outbound::Destination::parse(pattern)
            .with_context(|| format!("--allow-outbound {pattern:?}"))?;
    }

    let uploaded = upload(api, bytes).await?;
    let changed: Changed = api
        .post(
            &format!("{}/{}/versions", paths::FUNCTIONS, args.name),
            &NewVersion {
                digest: uploaded.digest.clone(),
                env,
                outbound: args.outbound.to_vec(),
                kv: args.kv.to_vec(),
                limits: args.limits,
                routes,
            },
        )
        .await?;
    let deployed = Instant::now();
    let version = changed.version.unwrap_or_default();
    println!(
        "deployed {} v{version} ({}, revision {})",
        args.name,
        &uploaded.digest[..12],
        changed.revision
    );
    if let Some(limit) = args.wait {
        converge(api, changed.revision, deployed, limit).await?;
    }
    Ok(version)
}

/// The KEY=VALUE lines of a .env file: blank lines and `#` comments skipped, an optional
/// `export ` before the key, a value in matching single or double quotes taken without them.
fn env_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--env-file: cannot read {}", path.display()))?;
    let mut env = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!(
                "{}:{}: {line:?} is not KEY=VALUE",
                path.display(),
                number + 1
            );
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!(
                "{}:{}: {key:?} is not a key; keys have no spaces",
                path.display(),
                number + 1
            );
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
            .unwrap_or(value);
        env.insert(key.to_owned(), value.to_owned());
    }
    Ok(env)
}

/// Streams the component up with a progress line, answering its digest.
async fn upload(api: &Api, bytes: Vec<u8>) -> anyhow::Result<Uploaded> {
    let total = bytes.len() as u64;
    let sent = Arc::new(AtomicU64::new(0));
    let bytes = bytes::Bytes::from(bytes);
    let chunks: Vec<bytes::Bytes> = (0..bytes.len())
        .step_by(CHUNK)
        .map(|at| bytes.slice(at..(at + CHUNK).min(bytes.len())))
        .collect();
    let counter = sent.clone();
    let stream = futures::stream::iter(chunks).map(move |chunk| {
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok::<_, std::io::Error>(chunk)
    });
    let request = api
        .request(reqwest::Method::PUT, paths::COMPONENTS)
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .header(reqwest::header::CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(stream));
    let progress = tokio::spawn(show_progress(sent, total));
    let result = api.send::<Uploaded>(request).await;
    progress.abort();
    let uploaded = result?;
    eprintln!(
        "{}uploaded {} ({}{})",
        if std::io::stderr().is_terminal() {
            "\r\x1b[2K"
        } else {
            ""
        },
        size(total),
        &uploaded.digest[..12],
        if uploaded.existed {
            ", already there"
        } else {
            ""
        }
    );
    Ok(uploaded)
}

async fn show_progress(sent: Arc<AtomicU64>, total: u64) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    loop {
        let done = sent.load(Ordering::Relaxed);
        let percent = done * 100 / total.max(1);
        eprint!(
            "\r\x1b[2Kuploading {percent:3}% ({} of {})",
            size(done),
            size(total)
        );
        let _ = std::io::stderr().flush();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every live node serves `revision`, then says how long that took.
async fn converge(api: &Api, revision: u64, since: Instant, limit: Duration) -> anyhow::Result<()> {
    converge_saying(api, revision, since, limit, "live on").await
}

/// Waits until every live node serves `revision`; then prints `{done} N of N nodes after S s`.
async fn converge_saying(
    api: &Api,
    revision: u64,
    since: Instant,
    limit: Duration,
    done: &str,
) -> anyhow::Result<()> {
    loop {
        let nodes: Vec<NodeInfo> = api.get(paths::NODES).await?;
        match verdict(&nodes, revision, since.elapsed(), limit, done) {
            Verdict::Wait => tokio::time::sleep(POLL).await,
            Verdict::Done(message) => {
                println!("{message}");
                return Ok(());
            }
            Verdict::Failed(message) => bail!(message),
        }
    }
}

/// How long a node behind the new revision may keep reporting an error before it counts: the
/// error may be about an earlier revision, replaced once the node applies this one.
const UNHEALTHY_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, PartialEq)]
enum Verdict {
    Wait,
    Done(String),
    Failed(String),
}

/// Whether `nodes` serve `revision`, `elapsed` after the change, giving up after `limit`.
fn verdict(
    nodes: &[NodeInfo],
    revision: u64,
    elapsed: Duration,
    limit: Duration,
    done: &str,
) -> Verdict {
    let live: Vec<&NodeInfo> = nodes.iter().filter(|n| n.live).collect();
    if live.is_empty() {
        return Verdict::Done("no live nodes yet: nodes serve it as they connect".into());
    }
    let behind: Vec<&NodeInfo> = live
        .iter()
        .copied()
        .filter(|n| n.revision < revision)
        .collect();
    if behind.is_empty() {
        return Verdict::Done(format!(
            "{done} {} of {} nodes after {:.3} s",
            live.len(),
            live.len(),
            elapsed.as_secs_f64()
        ));
    }
    if elapsed > UNHEALTHY_GRACE
        && let Some(broken) = behind.iter().find(|n| !n.healthy)
    {
        return Verdict::Failed(format!(
            "node {} cannot apply revision {revision}: {}",
            broken.name,
            broken.error.as_deref().unwrap_or("no reason given")
        ));
    }
    if elapsed > limit {
        let names: Vec<String> = behind
            .iter()
            .map(|n| format!("{} (at revision {})", n.name, n.revision))
            .collect();
        return Verdict::Failed(format!(
            "after {} s, {} of {} live nodes still do not serve revision {revision}: {}; see `edge nodes`",
            limit.as_secs(),
            behind.len(),
            live.len(),
            names.join(", ")
        ));
    }
    Verdict::Wait
}

/// `edge purge`: records the purge, then waits until every live node has applied it.
pub(crate) async fn purge(
    api: &Api,
    purge: edge_wire::Purge,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let changed: Changed = api.post(paths::PURGE, &purge).await?;
    let since = Instant::now();
    println!("purge recorded at revision {}", changed.revision);
    match wait {
        Some(limit) => converge_saying(api, changed.revision, since, limit, "purged on").await,
        None => Ok(()),
    }
}

fn kv_path(namespace: &str, key: &str) -> anyhow::Result<String> {
    edge_wire::kv::check_namespace(namespace).map_err(anyhow::Error::msg)?;
    edge_wire::kv::check_key(key).map_err(anyhow::Error::msg)?;
    Ok(edge_wire::kv::key_path(namespace, key))
}

/// `edge kv put`: the value from the argument or stdin.
pub(crate) async fn kv_put(
    api: &Api,
    namespace: &str,
    key: &str,
    value: Option<String>,
) -> anyhow::Result<()> {
    let path = kv_path(namespace, key)?;
    let value = match value {
        Some(value) => value.into_bytes(),
        None => {
            use std::io::Read as _;
            let mut value = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut value)
                .context("cannot read the value from stdin")?;
            value
        }
    };
    let written: edge_wire::kv::Written = api
        .send(api.request(reqwest::Method::PUT, &path).body(value))
        .await?;
    println!("stored {key:?} in {namespace} (KV log {})", written.seq);
    Ok(())
}

/// `edge kv get`: the value, as stored, on stdout.
pub(crate) async fn kv_get(api: &Api, namespace: &str, key: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let path = kv_path(namespace, key)?;
    let response = api
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .map_err(|e| api.unreachable(e))?;
    let status = response.status();
    let body = response.bytes().await.context("the answer broke off")?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{message} ({status})");
    }
    std::io::stdout().write_all(&body)?;
    Ok(())
}

/// `edge kv list`: every key, page after page.
pub(crate) async fn kv_list(api: &Api, namespace: &str, prefix: &str) -> anyhow::Result<()> {
    edge_wire::kv::check_namespace(namespace).map_err(anyhow::Error::msg)?;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "{}/{namespace}?prefix={}",
            paths::KV,
            edge_wire::kv::key_segment(prefix)
        );
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", edge_wire::kv::key_segment(cursor)));
        }
        let page: edge_wire::kv::Keys = api.get(&path).await?;
        for key in &page.keys {
            println!("{key}");
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// `edge kv delete`.
pub(crate) async fn kv_delete(api: &Api, namespace: &str, key: &str) -> anyhow::Result<()> {
    let path = kv_path(namespace, key)?;
    let written: edge_wire::kv::Written = api
        .send(api.request(reqwest::Method::DELETE, &path))
        .await?;
    println!("deleted {key:?} from {namespace} (KV log {})", written.seq);
    Ok(())
}

/// `edge secrets put`: the value from stdin.
pub(crate) async fn put_secret(
    api: &Api,
    function: &str,
    name: &str,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal as _, Read as _};
    if !edge_wire::is_secret_name(name) {
        bail!(
            "secret name {name:?} is not allowed: use A-Z, a-z, 0-9 and _, not starting with a digit"
        );
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("enter the value of {name}, then Ctrl-D:");
    }
    let mut value = Vec::new();
    stdin
        .lock()
        .read_to_end(&mut value)
        .context("cannot read the secret's value from stdin")?;
    if value.ends_with(b"\n") {
        value.pop();
        if value.ends_with(b"\r") {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!(
            "the value of {name} is empty; pipe it in: `edge secrets put {function} {name} < file`"
        );
    }
    let path = format!("{}/{function}/secrets/{name}", paths::FUNCTIONS);
    let changed: Changed = api
        .send(api.request(reqwest::Method::PUT, &path).body(value))
        .await?;
    let since = Instant::now();
    println!(
        "secret {name} of {function} set (revision {})",
        changed.revision
    );
    match wait {
        Some(limit) => converge_saying(api, changed.revision, since, limit, "set on").await,
        None => Ok(()),
    }
}

/// `edge secrets list`.
pub(crate) async fn list_secrets(api: &Api, function: &str) -> anyhow::Result<()> {
    let secrets: Vec<edge_wire::SecretInfo> = api
        .get(&format!("{}/{function}/secrets", paths::FUNCTIONS))
        .await?;
    if secrets.is_empty() {
        println!(
            "{function} has no secrets; set one with `edge secrets put {function} NAME < file`"
        );
        return Ok(());
    }
    println!("NAME                             SET (UTC)");
    for secret in secrets {
        println!("{:<32} {}", secret.name, utc(secret.updated_unix_ms));
    }
    Ok(())
}

/// `edge secrets delete`.
pub(crate) async fn delete_secret(
    api: &Api,
    function: &str,
    name: &str,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let path = format!("{}/{function}/secrets/{name}", paths::FUNCTIONS);
    let changed: Changed = api
        .send(api.request(reqwest::Method::DELETE, &path))
        .await?;
    let since = Instant::now();
    println!(
        "secret {name} of {function} deleted (revision {})",
        changed.revision
    );
    match wait {
        Some(limit) => converge_saying(api, changed.revision, since, limit, "deleted on").await,
        None => Ok(()),
    }
}

pub(crate) async fn versions(api: &Api, name: &str) -> anyhow::Result<()> {
    let function: FunctionInfo = api.get(&format!("{}/{name}", paths::FUNCTIONS)).await?;
    println!("VERSION  DIGEST        CREATED (UTC)         STATE");
    for v in function.versions.iter().rev() {
        let mut outbound = if v.outbound.is_empty() {
            String::new()
        } else {
            format!("  outbound: {}", v.outbound.join(" "))
        };
        if !v.kv.is_empty() {
            outbound.push_str(&format!("  kv: {}", v.kv.join(" ")));
        }
        let state = if v.version == function.active {
            "active".to_owned()
        } else if let Some((canary, percent)) = function.canary.filter(|c| c.0 == v.version) {
            format!("canary {percent}% (v{canary})")
        } else {
            String::new()
        };
        println!(
            "v{:<7} {:<13} {:<21} {state}{outbound}",
            v.version,
            &v.digest[..v.digest.len().min(12)],
            utc(v.created_unix_ms)
        );
    }
    Ok(())
}

pub(crate) async fn rollback(
    api: &Api,
    name: &str,
    to: Option<u32>,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let changed: Changed = api
        .post(
            &format!("{}/{name}/rollback", paths::FUNCTIONS),
            &Rollback { to },
        )
        .await?;
    let since = Instant::now();
    println!(
        "{name} is back on v{} (revision {})",
        changed.version.unwrap_or_default(),
        changed.revision
    );
    match wait {
        Some(limit) => converge(api, changed.revision, since, limit).await,
        None => Ok(()),
    }
}

pub(crate) async fn canary(
    api: &Api,
    name: &str,
    version: u32,
    percent: u8,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let changed: Changed = api
        .post(
            &format!("{}/{name}/canary", paths::FUNCTIONS),
            &SetCanary { version, percent },
        )
        .await?;
    let since = Instant::now();
    if percent == 0 {
        println!("canary of {name} ended (revision {})", changed.revision);
    } else {
        println!(
            "v{version} of {name} takes {percent}% of its requests (revision {})",
            changed.revision
        );
    }
    match wait {
        Some(limit) => converge(api, changed.revision, since, limit).await,
        None => Ok(()),
    }
}

pub(crate) async fn routes(api: &Api) -> anyhow::Result<()> {
    let routes: Vec<Route> = api.get(paths::ROUTES).await?;
    println!("HOST                           PATH                 FUNCTION");
    for r in routes {
        println!(
            "{:<30} {:<20} {}{}",
            r.host.as_deref().unwrap_or("*"),
            r.path,
            r.function,
            if r.cache { " (cached)" } else { "" }
        );
    }
    Ok(())
}

pub(crate) async fn nodes(api: &Api) -> anyhow::Result<()> {
    let nodes: Vec<NodeInfo> = api.get(paths::NODES).await?;
    println!("NODE                      REVISION  STATE      LAST SEEN (UTC)       ADDRESS");
    for n in nodes {
        let state = match (n.live, n.healthy) {
            (false, _) => "gone",
            (true, true) => "serving",
            (true, false) => "failing",
        };
        println!(
            "{:<25} {:<9} {:<10} {:<21} {}{}",
            n.name,
            n.revision,
            state,
            utc(n.last_seen_unix_ms),
            n.address,
            n.error.map(|e| format!("  ({e})")).unwrap_or_default()
        );
    }
    Ok(())
}

pub(crate) async fn create_token(api: &Api, scope: Scope, name: String) -> anyhow::Result<()> {
    let token: TokenInfo = api.post(paths::TOKENS, &NewToken { scope, name }).await?;
    eprintln!(
        "token {} (scope {}); it is shown only now:",
        token.id,
        token.scope.as_str()
    );
    println!("{}", token.token.unwrap_or_default());
    Ok(())
}

pub(crate) async fn list_tokens(api: &Api) -> anyhow::Result<()> {
    let tokens: Vec<TokenInfo> = api.get(paths::TOKENS).await?;
    println!("ID     SCOPE    CREATED (UTC)         NAME");
    for t in tokens {
        println!(
            "{:<6} {:<8} {:<21} {}",
            t.id,
            t.scope.as_str(),
            utc(t.created_unix_ms),
            t.name
        );
    }
    Ok(())
}

pub(crate) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` for milliseconds since the Unix epoch (civil-from-days, UTC).
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, revision: u64, healthy: bool, live: bool) -> NodeInfo {
        NodeInfo {
            id: 1,
            name: name.into(),
            address: String::new(),
            revision,
            healthy,
            error: (!healthy).then(|| "bad component".into()),
            last_seen_unix_ms: 0,
            live,
        }
    }

    #[test]
    fn convergence_waits_for_every_live_node() {
        let limit = Duration::from_secs(60);
        let ms = Duration::from_millis;
        let nodes = [node("a", 5, true, true), node("b", 4, true, true)];
        assert_eq!(verdict(&nodes, 5, ms(10), limit, "live on"), Verdict::Wait);
        let nodes = [node("a", 5, true, true), node("gone", 1, true, false)];
        assert!(
            matches!(verdict(&nodes, 5, ms(10), limit, "live on"), Verdict::Done(m) if m.contains("1 of 1"))
        );
        assert!(
            matches!(verdict(&[], 5, ms(10), limit, "live on"), Verdict::Done(m) if m.contains("no live nodes"))
        );
        let nodes = [node("b", 4, true, true)];
        assert!(
            matches!(verdict(&nodes, 5, Duration::from_secs(61), limit, "live on"), Verdict::Failed(m) if m.contains("b (at revision 4)"))
        );
    }

    #[test]
    fn an_error_counts_only_once_the_node_had_time_to_apply_the_new_revision() {
        // A node still reporting the failure of an earlier revision is given time first.
        let limit = Duration::from_secs(60);
        let nodes = [node("a", 4, false, true)];
        assert_eq!(
            verdict(&nodes, 5, Duration::from_millis(100), limit, "live on"),
            Verdict::Wait
        );
        assert!(matches!(
            verdict(&nodes, 5, Duration::from_secs(4), limit, "live on"),
            Verdict::Failed(m) if m.contains("node a cannot apply revision 5: bad component")
        ));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_431_600_000), "2026-11-23 11:00:00");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
