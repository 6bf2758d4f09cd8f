//! Test harness: builds the guest components, starts real `edge-node` and `edge-control-plane`
//! processes on `127.0.0.1:0`, reads their bound addresses from stdout and collects their logs.
//! A process is killed, by its own PID, when its handle drops.
#![warn(missing_docs)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a node gets to start (compiling components in a debug build included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The folders of the built guest components (the examples and the test guests), building
/// them on first use, and installing the wasm32-wasip2 target first if it is missing. Each is
/// its own workspace with its own target dir, so this never waits on the outer cargo's lock.
pub fn guests() -> &'static [PathBuf; 2] {
    static DIRS: OnceLock<[PathBuf; 2]> = OnceLock::new();
    DIRS.get_or_init(|| {
        install_wasm_target();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        ["examples", "tests/guests"].map(|workspace| {
            let dir = root.join(workspace);
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(dir.join("Cargo.toml"))
                .env_remove("CARGO_TARGET_DIR")
                .status()
                .expect("running cargo to build the guests");
            assert!(
                status.success(),
                "building the guests in {workspace} failed"
            );
            dir.join("target/wasm32-wasip2/release")
        })
    })
}

fn install_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == "wasm32-wasip2")
        })
        .unwrap_or(false);
    if !installed {
        eprintln!("installing the wasm32-wasip2 target with rustup");
        let status = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status()
            .expect("running rustup");
        assert!(status.success(), "`rustup target add wasm32-wasip2` failed");
    }
}

/// Path of the built guest `name`: an example (`hello`) or a test guest (`probe`,
/// `no-export`, ...).
pub fn guest(name: &str) -> PathBuf {
    let file = if name == "no-export" {
        "no-export.wasm".to_owned()
    } else {
        format!("{}.wasm", name.replace('-', "_"))
    };
    guests()
        .iter()
        .map(|dir| dir.join(&file))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("guest {name} is not built in {:?}", guests()))
}

/// The `edge-node` binary that `cargo test` built next to this test executable, or
/// `EDGE_NODE_BIN`.
pub fn edge_node_bin() -> PathBuf {
    workspace_bin("edge-node", "EDGE_NODE_BIN", "edge-node")
}

/// The `edge` CLI built next to this test executable (`sdk/cli/tests/cli.rs` makes cargo
/// build it), or `EDGE_BIN`.
pub fn edge_cli_bin() -> PathBuf {
    workspace_bin("edge", "EDGE_BIN", "edge-cli")
}

/// A binary of the workspace: `$env` if set, else `target/<profile>/<name>` (cargo builds a
/// package's binaries for its integration tests, and every package here has some).
fn workspace_bin(name: &str, env: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/all-<hash> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("the target dir");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, or `cargo build -p {package}` first",
        path.display()
    );
    path
}

/// Options for one `edge-node serve` process.
#[derive(Debug, Default, Clone)]
pub struct NodeBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl NodeBuilder {
    /// Serve one component at `/`.
    pub fn component(mut self, path: &Path) -> Self {
        self.args.push("--component".into());
        self.args.push(path.display().to_string());
        self
    }

    /// Serve a routes file.
    pub fn routes(mut self, path: &Path) -> Self {
        self.args.push("--routes".into());
        self.args.push(path.display().to_string());
        self
    }

    /// Any further flag(s).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for the node process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(edge_node_bin());
        cmd.arg("serve")
            .args(["--log-format", "json"])
            .args(&self.args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Free ports, and a small pool so each test node reserves little address space,
        // unless the test says otherwise.
        for (flag, value) in [
            ("--listen", "127.0.0.1:0"),
            ("--admin-listen", "127.0.0.1:0"),
            ("--max-instances", "64"),
        ] {
            if !self.args.iter().any(|a| a == flag) {
                cmd.args([flag, value]);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the node and waits until it listens.
    ///
    /// # Panics
    /// When it exits or does not listen within a minute; the message has its stderr.
    pub fn start(self) -> NodeProcess {
        let mut child = self.command().spawn().expect("spawning edge-node");
        let logs = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().unwrap(), logs.clone());
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let keep = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut url = None;
        let mut admin = None;
        while url.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("admin listening on ") {
                        admin = Some(rest.to_owned());
                    } else if let Some(rest) = line.strip_prefix("listening on ") {
                        url = Some(rest.to_owned());
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "edge-node exited with {status} before listening:\n{}",
                            logs.lock().unwrap()
                        );
                    }
                    if left.is_zero() {
                        let _ = child.kill();
                        panic!(
                            "edge-node did not listen within {START_TIMEOUT:?}:\n{}",
                            logs.lock().unwrap()
                        );
                    }
                }
            }
        }
        NodeProcess {
            child,
            url: url.unwrap(),
            admin: admin.unwrap(),
            logs,
            printed,
        }
    }

    /// Runs the node expecting it to refuse to start; returns its exit status and stderr.
    ///
    /// # Panics
    /// When it starts listening instead, or does not exit within a minute.
    pub fn start_failure(self) -> (ExitStatus, String) {
        let mut child = self.command().spawn().expect("spawning edge-node");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = drain(child.stderr.take().unwrap(), logs.clone());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let _ = stderr.join();
                let text = logs.lock().unwrap().clone();
                return (status, text);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("edge-node did not exit:\n{}", logs.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn drain(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut logs = into.lock().unwrap();
            logs.push_str(&line);
            logs.push('\n');
        }
    })
}

/// A running `edge-node`; killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    logs: Arc<Mutex<String>>,
    printed: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// The lines the node has printed on stdout so far (addresses, how to trust its
    /// self-signed certificate).
    pub fn stdout(&self) -> Vec<String> {
        self.printed.lock().unwrap().clone()
    }

    /// `host:port` of the public listener.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url
            .rsplit("//")
            .next()
            .unwrap()
            .parse()
            .expect("a socket address")
    }

    /// Everything the node has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a log line containing every one of `needles`; returns it.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .logs()
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
            {
                return Some(line.to_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        terminate(&mut self.child, timeout)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `child` (by its PID) and waits up to `timeout` for its exit status.
fn terminate(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary folder for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temp dir")
}

/// Writes a routes file into `dir` and returns its path.
pub fn write_routes(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("routes.toml");
    std::fs::write(&path, toml).expect("writing routes.toml");
    path
}

/// The `edge-control-plane` binary that `cargo test` built next to this test executable
/// (`control-plane/tests/cli.rs` makes cargo build it), or `EDGE_CONTROL_PLANE_BIN`.
pub fn control_plane_bin() -> PathBuf {
    workspace_bin(
        "edge-control-plane",
        "EDGE_CONTROL_PLANE_BIN",
        "edge-control-plane",
    )
}

/// Options for one `edge-control-plane serve` process. Without [`Self::data_dir`] it gets a
/// temp dir of its own, kept as long as the process (and any restart of it) lives.
#[derive(Debug, Default, Clone)]
pub struct ControlPlaneBuilder {
    data_dir: Option<PathBuf>,
    temp: Option<Arc<tempfile::TempDir>>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ControlPlaneBuilder {
    /// Use `dir` as the data dir (to start again on another process's state).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Any further flag(s).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&mut self) -> Command {
        if self.data_dir.is_none() {
            let temp = temp_dir();
            self.data_dir = Some(temp.path().join("data"));
            self.temp = Some(Arc::new(temp));
        }
        let mut cmd = Command::new(control_plane_bin());
        cmd.arg("serve")
            .args(["--log-format", "json"])
            .arg("--data-dir")
            .arg(self.data_dir.as_ref().unwrap())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EDGE_CP_") {
                cmd.env_remove(key);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the control plane and waits until it listens.
    ///
    /// # Panics
    /// When it exits or does not listen within a minute; the message has its stderr.
    pub fn start(mut self) -> ControlPlaneProcess {
        let mut child = self.command().spawn().expect("spawning edge-control-plane");
        let logs = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().unwrap(), logs.clone());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let all_lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                all_lines.lock().unwrap().push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut printed_token = None;
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(token) = line.strip_prefix("admin token: ") {
                        printed_token = Some(token.to_owned());
                    } else if let Some(url) = line.strip_prefix("listening on ") {
                        break url.to_owned();
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "edge-control-plane exited with {status} before listening:\n{}",
                            logs.lock().unwrap()
                        );
                    }
                    if left.is_zero() {
                        let _ = child.kill();
                        panic!(
                            "edge-control-plane did not listen within {START_TIMEOUT:?}:\n{}",
                            logs.lock().unwrap()
                        );
                    }
                }
            }
        };
        let data_dir = self.data_dir.clone().unwrap();
        ControlPlaneProcess {
            child,
            url,
            printed_token,
            data_dir,
            stdout,
            logs,
            builder: self,
        }
    }

    /// Runs the control plane expecting it to refuse to start; returns its exit status,
    /// stdout and stderr.
    ///
    /// # Panics
    /// When it does not exit within a minute.
    pub fn start_failure(mut self) -> (ExitStatus, String, String) {
        let mut child = self.command().spawn().expect("spawning edge-control-plane");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = drain(child.stderr.take().unwrap(), logs.clone());
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = drain(child.stdout.take().unwrap(), out.clone());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let _ = stderr.join();
                let _ = stdout.join();
                let out = out.lock().unwrap().clone();
                let logs = logs.lock().unwrap().clone();
                return (status, out, logs);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("edge-control-plane did not exit:\n{}", logs.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A running `edge-control-plane`; killed when dropped.
#[derive(Debug)]
pub struct ControlPlaneProcess {
    child: Child,
    url: String,
    printed_token: Option<String>,
    data_dir: PathBuf,
    stdout: Arc<Mutex<Vec<String>>>,
    logs: Arc<Mutex<String>>,
    builder: ControlPlaneBuilder,
}

impl ControlPlaneProcess {
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port` it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url
            .rsplit("//")
            .next()
            .unwrap()
            .parse()
            .expect("a socket address")
    }

    /// The admin token: the one this start printed, else the one in `<data-dir>/admin-token`.
    pub fn admin_token(&self) -> String {
        match &self.printed_token {
            Some(token) => token.clone(),
            None => std::fs::read_to_string(self.data_dir.join("admin-token"))
                .expect("reading the admin-token file")
                .trim()
                .to_owned(),
        }
    }

    /// The admin token this start printed, if it printed one (only a first start does).
    pub fn printed_admin_token(&self) -> Option<&str> {
        self.printed_token.as_deref()
    }

    /// Its data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Every line it has printed on stdout.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything it has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        terminate(&mut self.child, timeout)
    }

    /// Stops it (SIGTERM, asserting a clean exit) and starts it again with the same flags on
    /// the same data dir and the same address, so clients keep their URL.
    ///
    /// # Panics
    /// When it does not exit cleanly within 20 s, or the new process does not start.
    pub fn restart(mut self) -> ControlPlaneProcess {
        let status = self
            .terminate(Duration::from_secs(20))
            .expect("edge-control-plane did not exit after SIGTERM");
        assert!(status.success(), "exit status {status}:\n{}", self.logs());
        let mut builder = self.builder.clone();
        let mut args = std::mem::take(&mut builder.args).into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--listen" => drop(args.next()),
                a if a.starts_with("--listen=") => {}
                _ => builder.args.push(arg),
            }
        }
        builder.args.push("--listen".into());
        builder.args.push(self.addr().to_string());
        builder.start()
    }
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Any command run as a child process whose stdout and stderr are collected (interleaved, line
/// by line) while it runs; killed, by its PID, when dropped.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Spawned {
    /// Starts `command` with piped output.
    ///
    /// # Panics
    /// When it cannot start.
    pub fn start(mut command: Command) -> Spawned {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().expect("piped"), output.clone());
        drain(child.stderr.take().expect("piped"), output.clone());
        Spawned { child, output }
    }

    /// Everything it has printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until its output contains `needle` `count` times; false after `timeout`.
    pub fn wait_for(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        terminate(&mut self.child, timeout)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
