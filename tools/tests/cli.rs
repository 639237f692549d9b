//! The `raftlog` binary against the golden store, stores written here, and damaged copies:
//! exit codes, the JSON field names (pinned), read-only behaviour, hostile files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use raftlog::{Entry, LogStore, Options};
use serde_json::Value;

fn raftlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raftlog")).args(args).output().expect("run raftlog")
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// A copy of format/golden/v1 in a temporary directory.
fn golden_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../format/golden/v1");
    for file in std::fs::read_dir(golden).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), copy.path().join(file.file_name())).unwrap();
    }
    copy
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn path(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().unwrap()
}

#[test]
fn stat_reports_the_golden_store_with_pinned_fields() {
    let dir = golden_copy();
    let output = raftlog(&["--json", "stat", path(&dir)]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["type"], "store");
    assert_eq!(
        (lines[0]["data"]["first_index"].as_u64(), lines[0]["data"]["last_index"].as_u64()),
        (Some(11), Some(55))
    );
    assert_eq!(
        lines[0]["data"]["hard_state"],
        serde_json::json!({"term": 3, "vote": 2, "commit": 45})
    );
    let segment = lines.iter().find(|l| l["type"] == "segment").unwrap();
    for field in [
        "id",
        "first_index",
        "end_index",
        "live_entries",
        "records",
        "file_bytes",
        "state",
        "payload_bytes",
        "stored_payload_bytes",
        "compression_ratio",
    ] {
        assert!(segment["data"].get(field).is_some(), "segment field {field}");
    }
    let totals = lines.last().unwrap();
    assert_eq!(
        (totals["type"].as_str(), totals["data"]["entries"].as_u64()),
        (Some("totals"), Some(45))
    );
}

#[test]
fn verify_is_clean_on_a_good_store_and_changes_nothing() {
    let dir = golden_copy();
    let before = files(dir.path());
    let output = raftlog(&["--json", "verify", path(&dir)]);
    assert_eq!(output.status.code(), Some(0));
    let lines = json_lines(&output);
    assert_eq!(
        lines.last().unwrap()["data"],
        serde_json::json!({"entries_verified": 45, "findings": 0})
    );
    assert_eq!(files(dir.path()), before, "the inspector wrote to the directory");
}

#[test]
fn verify_classifies_corruption_and_torn_tails() {
    // A bit flip inside a sealed record: found by reading it, classified as corruption.
    let dir = golden_copy();
    let segment = dir.path().join("0000000000000003.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[64 + 40] ^= 1;
    std::fs::write(&segment, bytes).unwrap();
    let output = raftlog(&["--json", "verify", path(&dir)]);
    assert_eq!(output.status.code(), Some(1));
    let finding = json_lines(&output).into_iter().find(|l| l["type"] == "finding").unwrap();
    assert_eq!(finding["data"]["class"], "corruption");
    assert_eq!(finding["data"]["offset"], 64);
    assert_eq!(finding["data"]["indexes"], serde_json::json!([14, 15]));
    assert!(finding["data"]["file"].as_str().unwrap().ends_with("0000000000000003.seg"));
    for field in ["class", "rule", "file", "offset", "indexes", "detail"] {
        assert!(finding["data"].get(field).is_some(), "finding field {field}");
    }

    // A torn tail on the active segment: what recovery would cut.
    let dir = golden_copy();
    let active = dir.path().join("0000000000000009.seg");
    let bytes = std::fs::read(&active).unwrap();
    std::fs::write(&active, &bytes[..bytes.len() - 5]).unwrap();
    let output = raftlog(&["--json", "verify", path(&dir)]);
    assert_eq!(output.status.code(), Some(1));
    let finding = json_lines(&output).into_iter().find(|l| l["type"] == "finding").unwrap();
    assert_eq!(
        (finding["data"]["class"].as_str(), finding["data"]["indexes"].clone()),
        (Some("torn_tail"), serde_json::json!([55, 56]))
    );
}

#[test]
fn dump_prints_entries_and_marks_damaged_ones() {
    let dir = golden_copy();
    let output =
        raftlog(&["--json", "dump", path(&dir), "--from", "49", "--to", "52", "--payload", "utf8"]);
    assert_eq!(output.status.code(), Some(0));
    let lines = json_lines(&output);
    let indexes: Vec<u64> = lines.iter().map(|l| l["data"]["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [49, 50, 51]);
    assert_eq!(
        lines[1]["data"],
        serde_json::json!({"index": 50, "term": 3, "kind": 1, "size": 18, "checksum": "ok", "payload": "rewritten entry 50"})
    );

    let segment = dir.path().join("0000000000000003.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[64 + 40] ^= 1;
    std::fs::write(&segment, bytes).unwrap();
    let output = raftlog(&["--json", "dump", path(&dir), "--segment", "3"]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 7, "every entry of the segment, the damaged one marked");
    assert_eq!(
        (lines[0]["data"]["index"].as_u64(), lines[0]["data"]["checksum"].as_str()),
        (Some(14), Some("bad"))
    );
    assert_eq!(lines[1]["data"]["checksum"], "ok");
}

#[test]
fn meta_and_index_show_both_slots_and_the_entries() {
    let dir = golden_copy();
    let lines = json_lines(&raftlog(&["--json", "meta", path(&dir)]));
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[1]["data"]["valid"].as_bool(), lines[1]["data"]["commit"].as_u64()),
        (Some(true), Some(45))
    );
    let output = raftlog(&["--json", "index", path(&dir), "3"]);
    assert_eq!(output.status.code(), Some(0));
    let lines = json_lines(&output);
    assert_eq!(
        (lines[0]["data"]["valid"].as_bool(), lines[0]["data"]["entries"].as_u64()),
        (Some(true), Some(7))
    );
    assert_eq!(lines[1]["data"]["index"], 14);
}

#[test]
fn works_while_a_writer_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), Options::default()).unwrap();
    store.append(&[Entry::new(1, 1, "held"), Entry::new(2, 1, "open")]).unwrap();
    store.sync().unwrap();
    let output = raftlog(&["verify", path(&dir)]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 entries verified, 0 findings"));
    store.append(&[Entry::new(3, 1, "still writable")]).unwrap();
}

#[test]
fn hostile_directories_give_clear_errors_never_a_panic() {
    let missing = raftlog(&["verify", "/definitely/not/here"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(!missing.stderr.is_empty());
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        raftlog(&["stat", path(&empty)]).status.code(),
        Some(2),
        "no store in an empty directory"
    );
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for case in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        for name in ["meta", "0000000000000001.seg", "0000000000000001.idx", "0000000000000002.seg"]
        {
            let len = (case * 97 + name.len() * 13) % 3000;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        for command in ["stat", "verify", "dump", "meta"] {
            let output = raftlog(&[command, path(&dir)]);
            let code = output.status.code();
            assert!(
                matches!(code, Some(0..=2)),
                "case {case} {command}: {code:?} {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let output = raftlog(&["index", path(&dir), "1"]);
        assert!(matches!(output.status.code(), Some(0..=2)), "case {case} index");
    }
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let dir = golden_copy();
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftlog"))
        .args(["dump", path(&dir), "--payload", "hex"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn snapshots_lists_verifies_and_reports_damage_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let store = raftlog::SnapshotStore::open(dir.path()).unwrap();
    for index in [10u64, 20] {
        let mut writer = store.begin(index, 2, b"conf").unwrap();
        writer.add_bytes(4, "data", &vec![index as u8; 3000]).unwrap();
        writer.add_bytes(9, "schema", b"s").unwrap();
        writer.finish().unwrap();
    }
    let abandoned = store.begin(30, 2, b"").unwrap();
    std::mem::forget(abandoned); // as after a crash: a staging directory is left
    let output = raftlog(&["--json", "snapshots", "--files", path(&dir)]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output);
    let snapshots: Vec<&Value> = lines.iter().filter(|l| l["type"] == "snapshot").collect();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(snapshots[1]["data"]["index"], 20);
    assert_eq!(snapshots[1]["data"]["files"], 2);
    assert_eq!(snapshots[1]["data"]["valid"], true);
    assert_eq!(lines.iter().filter(|l| l["type"] == "snapshot_file").count(), 4);
    assert_eq!(lines.iter().filter(|l| l["type"] == "in_progress").count(), 1);

    // A flipped byte in a data file: only --verify reads the bytes, and exits 1.
    let snap = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .max()
        .unwrap();
    let data = snap.join("00000004-data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&data, bytes).unwrap();
    let before = files(&snap);
    assert_eq!(raftlog(&["snapshots", path(&dir)]).status.code(), Some(0));
    let output = raftlog(&["--json", "snapshots", "--verify", path(&dir)]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    let invalid: Vec<&Value> = lines.iter().filter(|l| l["data"]["valid"] == false).collect();
    assert_eq!(invalid.len(), 1);
    assert!(invalid[0]["data"]["error"].as_str().unwrap().contains("checksum"), "{lines:?}");
    assert_eq!(files(&snap), before, "the inspector changed nothing");
}

#[test]
fn verify_reports_a_missing_segment_of_committed_entries() {
    let dir = golden_copy();
    for name in ["0000000000000005.seg", "0000000000000005.idx"] {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let output = raftlog(&["--json", "verify", path(&dir)]);
    assert_eq!(output.status.code(), Some(1));
    let finding = json_lines(&output).into_iter().find(|l| l["type"] == "finding").unwrap();
    assert_eq!(
        (finding["data"]["class"].as_str(), finding["data"]["rule"].as_str()),
        (Some("missing_segment"), Some("R10"))
    );
    assert_eq!(finding["data"]["indexes"], serde_json::json!([11, 35]));
}
