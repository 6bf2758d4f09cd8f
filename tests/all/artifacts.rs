//! The compiled-artifact cache: a restart loads precompiled code; a corrupt or foreign file is
//! compiled again, never trusted, never a crash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_tests::{NodeBuilder, NodeProcess, guest, temp_dir};

use crate::get;

fn start(data_dir: &Path) -> NodeProcess {
    NodeBuilder::default()
        .component(&guest("hello"))
        .arg("--data-dir")
        .arg(data_dir.display().to_string())
        .start()
}

fn artifact(data_dir: &Path) -> PathBuf {
    let files: Vec<_> = std::fs::read_dir(data_dir.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

async fn serves(node: &NodeProcess) {
    assert_eq!(get(&node.url).await.0, 200);
}

fn says(node: &NodeProcess, needle: &str) {
    assert!(
        node.wait_for_log(&["function ready", needle], Duration::from_secs(5))
            .is_some(),
        "expected `{needle}` in:\n{}",
        node.logs()
    );
}

#[tokio::test]
async fn a_restart_serves_from_the_compiled_cache() {
    let data = temp_dir();
    let first = start(data.path());
    says(&first, "compiled with Cranelift");
    serves(&first).await;
    drop(first);

    let second = start(data.path());
    says(&second, "loaded precompiled artifact");
    serves(&second).await;
}

#[tokio::test]
async fn a_corrupt_or_foreign_artifact_is_recompiled_not_trusted() {
    let data = temp_dir();
    drop(start(data.path()));
    let path = artifact(data.path());
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let foreign: Vec<u8> = (0..good.len()).map(|i| (i * 7 % 256) as u8).collect();
    for (what, bytes) in [
        ("flipped", flipped),
        ("foreign", foreign),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let node = start(data.path());
        says(&node, "compiled with Cranelift");
        assert!(
            node.logs().contains("corrupt or foreign"),
            "{what}: no warning about the bad artifact:\n{}",
            node.logs()
        );
        serves(&node).await;
        drop(node);
        // The bad file was replaced by a sound one.
        assert_eq!(std::fs::read(&path).unwrap(), good, "{what}");
    }
}
