//! The inspector's commands, each a thin loop over `raftlog::inspect` and the store's reads.

use std::io::{self, IsTerminal};
use std::path::Path;

use raftlog::fs::OverlayFs;
use raftlog::snapshot::Verify;
use raftlog::{inspect, Entry, Error, LogStore, SnapshotOptions};
use serde_json::{json, Value};

use crate::{Outcome, Output, PayloadFormat};

/// Why a command stopped.
pub enum Failure {
    /// stdout was closed: not an error.
    BrokenPipe,
    /// The command could not run (exit code 2).
    Other(String),
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::BrokenPipe => Failure::BrokenPipe,
            _ => Failure::Other(error.to_string()),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Other(error.to_string())
    }
}

type CommandResult = Result<Outcome, Failure>;

/// Bytes of payload read per batch while walking a log.
const READ_BATCH_BYTES: u64 = 4 << 20;
/// Entries above which `verify` shows a progress bar (on a terminal).
const PROGRESS_ENTRIES_MIN: u64 = 100_000;

fn open(dir: &Path) -> Result<LogStore<OverlayFs>, Failure> {
    let store = inspect::open_read_only(dir)?;
    if store.recovery_report().created {
        return Err(Failure::Other(format!("{} holds no raftlog store", dir.display())));
    }
    Ok(store)
}

fn range_json(range: &std::ops::Range<u64>) -> Value {
    json!([range.start, range.end])
}

pub fn stat(dir: &Path, out: &mut Output) -> CommandResult {
    let store = open(dir)?;
    let (first, last, hs) = (store.first_index(), store.last_index(), store.hard_state());
    out.emit(
        "store",
        || {
            format!(
                "{}: entries [{first}, {last}], hard state term {} vote {} commit {}",
                dir.display(),
                hs.term,
                hs.vote,
                hs.commit
            )
        },
        json!({ "dir": dir, "first_index": first, "last_index": last,
                "hard_state": { "term": hs.term, "vote": hs.vote, "commit": hs.commit } }),
    )?;
    let segments = raftlog::inspect::segment_summaries(&store);
    let mut totals = (0u64, 0u64, 0u64, 0u64);
    for s in &segments {
        let live = s.end_index.saturating_sub(s.first_index.max(first));
        let ratio = if s.payload_bytes == 0 {
            1.0
        } else {
            s.stored_payload_bytes as f64 / s.payload_bytes as f64
        };
        let state = if s.sealed { "sealed" } else { "active" };
        out.emit(
            "segment",
            || format!("  segment {:>4}  [{}, {})  {live} live of {} records  {} bytes  {state}  compression {ratio:.3}", s.id, s.first_index, s.end_index, s.records, s.file_bytes),
            json!({ "id": s.id, "first_index": s.first_index, "end_index": s.end_index,
                    "live_entries": live, "records": s.records, "file_bytes": s.file_bytes,
                    "state": state, "payload_bytes": s.payload_bytes,
                    "stored_payload_bytes": s.stored_payload_bytes, "compression_ratio": ratio }),
        )?;
        totals = (
            totals.0 + live,
            totals.1 + s.file_bytes,
            totals.2 + s.payload_bytes,
            totals.3 + s.stored_payload_bytes,
        );
    }
    out.emit(
        "totals",
        || {
            format!(
                "{} segments, {} entries, {} bytes on disk, {} payload bytes stored as {}",
                segments.len(),
                totals.0,
                totals.1,
                totals.2,
                totals.3
            )
        },
        json!({ "segments": segments.len(), "entries": totals.0, "file_bytes": totals.1,
                "payload_bytes": totals.2, "stored_payload_bytes": totals.3 }),
    )?;
    Ok(Outcome::Clean)
}

fn entry_json(entry: &Entry, payload: PayloadFormat) -> Value {
    let mut data = json!({ "index": entry.index, "term": entry.term, "kind": entry.kind,
                           "size": entry.payload.len(), "checksum": "ok" });
    match payload {
        PayloadFormat::Hex => data["payload"] = json!(hex(&entry.payload)),
        PayloadFormat::Utf8 => data["payload"] = json!(String::from_utf8_lossy(&entry.payload)),
        PayloadFormat::None => {}
    }
    data
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry_human(entry: &Entry, payload: PayloadFormat) -> String {
    let head = format!(
        "{:>10}  term {:<6} kind {:<3} {:>8} bytes  checksum ok",
        entry.index,
        entry.term,
        entry.kind,
        entry.payload.len()
    );
    match payload {
        PayloadFormat::Hex => format!("{head}  {}", hex(&entry.payload)),
        PayloadFormat::Utf8 => format!("{head}  {}", String::from_utf8_lossy(&entry.payload)),
        PayloadFormat::None => head,
    }
}

/// One step of a walk over the log.
enum Item<'a> {
    /// A verified entry.
    Good(&'a Entry),
    /// An index whose record fails verification (isolated by reading it alone).
    Bad(u64, &'a Error),
}

/// Walks `[lo, hi)` in index order; returns the count of damaged entries.
fn walk(
    store: &LogStore<OverlayFs>,
    (lo, hi): (u64, u64),
    visit: &mut dyn FnMut(Item<'_>) -> io::Result<()>,
) -> Result<u64, Failure> {
    let (mut index, mut damaged) = (lo, 0);
    while index < hi {
        match store.entries(index, hi, READ_BATCH_BYTES) {
            Ok(batch) => {
                for entry in &batch {
                    visit(Item::Good(entry))?;
                }
                index += batch.len() as u64;
            }
            // A read stops before a damaged entry; the one that starts at it names it.
            Err(error @ Error::Damaged { index: at, .. }) if at == index => {
                visit(Item::Bad(index, &error))?;
                damaged += 1;
                index += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(damaged)
}

pub fn dump(
    dir: &Path,
    (from, to, segment): (Option<u64>, Option<u64>, Option<u64>),
    payload: PayloadFormat,
    out: &mut Output,
) -> CommandResult {
    let store = open(dir)?;
    let (mut lo, mut hi) =
        (from.unwrap_or(store.first_index()), to.unwrap_or(store.last_index() + 1));
    if let Some(id) = segment {
        let summaries = raftlog::inspect::segment_summaries(&store);
        let found = summaries.iter().find(|s| s.id == id);
        let found = found.ok_or_else(|| Failure::Other(format!("no live segment {id}")))?;
        lo = lo.max(found.first_index).max(store.first_index());
        hi = hi.min(found.end_index).max(lo);
    }
    let damaged = walk(&store, (lo, hi), &mut |item| match item {
        Item::Good(entry) => {
            out.emit("entry", || entry_human(entry, payload), entry_json(entry, payload))
        }
        Item::Bad(index, error) => out.emit(
            "entry",
            || format!("{index:>10}  checksum BAD: {error}"),
            json!({ "index": index, "checksum": "bad", "error": error.to_string() }),
        ),
    })?;
    Ok(if damaged == 0 { Outcome::Clean } else { Outcome::ProblemsFound })
}

/// A finding of `verify`, classified by the recovery decision table (format/SPEC.md).
struct Finding {
    class: &'static str,
    rule: &'static str,
    file: String,
    offset: Option<u64>,
    indexes: Option<std::ops::Range<u64>>,
    detail: String,
}

fn corruption(error: &Error) -> Option<Finding> {
    if let Error::Damaged { index, path, offset, reason } = error {
        return Some(Finding {
            class: "corruption",
            rule: "R9 (a damaged record of a sealed segment: repairable from a peer)",
            file: path.display().to_string(),
            offset: Some(*offset),
            indexes: Some(*index..index + 1),
            detail: reason.to_string(),
        });
    }
    let Error::Corrupt { path, offset, indexes, reason } = error else { return None };
    Some(Finding {
        class: "corruption",
        rule: "R2/R6/R8-R13",
        file: path.display().to_string(),
        offset: Some(*offset),
        indexes: indexes.clone(),
        detail: reason.to_string(),
    })
}

fn recovery_findings(report: &raftlog::RecoveryReport) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(torn) = &report.torn_tail {
        findings.push(Finding {
            class: "torn_tail",
            rule: "R5/R7",
            file: torn.path.display().to_string(),
            offset: Some(torn.offset),
            indexes: Some(torn.indexes_cut.clone()),
            detail: match torn.durability {
                raftlog::TailDurability::Unsynced => {
                    format!("{} bytes never synced; recovery would cut them", torn.bytes_cut)
                }
                _ => format!(
                    "{} bytes recovery would cut, of unknown durability: they may have been \
                     acknowledged (a lost sync mark); get them back from a peer",
                    torn.bytes_cut
                ),
            },
        });
    }
    if let Some(lost) = &report.lost_prefix {
        findings.push(Finding {
            class: "missing_segment",
            rule: "R10",
            file: "(missing)".into(),
            offset: None,
            indexes: Some(lost.indexes.clone()),
            detail: format!(
                "committed entries {}..{} are in no segment; recovery would restart the log \
                 after them, dropping every entry before (a replica restores them from a \
                 peer's snapshot)",
                lost.missing.start, lost.missing.end
            ),
        });
    }
    if let Some(slot) = report.damaged_meta_slot {
        findings.push(Finding {
            class: "torn_write",
            rule: "R3",
            file: "meta".into(),
            offset: Some(slot as u64 * 512),
            indexes: None,
            detail: format!("meta slot {slot} damaged; the other is used"),
        });
    }
    for rebuild in &report.rebuilt_indexes {
        let detail = rebuild.reason.as_ref().map_or("missing".to_owned(), ToString::to_string);
        findings.push(Finding {
            class: "derived_data",
            rule: "R14",
            file: rebuild.path.display().to_string(),
            offset: None,
            indexes: None,
            detail: format!("index {detail}; recovery would rebuild it"),
        });
    }
    for path in &report.removed_files {
        findings.push(Finding {
            class: "leftover",
            rule: "R4/R11/R15",
            file: path.display().to_string(),
            offset: None,
            indexes: None,
            detail: "dead file; recovery would remove it".into(),
        });
    }
    findings
}

pub fn verify(dir: &Path, out: &mut Output) -> CommandResult {
    let mut findings = Vec::new();
    let mut checked = 0u64;
    match inspect::open_read_only(dir) {
        Err(error) => findings.push(corruption(&error).ok_or_else(|| Failure::from(error))?),
        Ok(store) if store.recovery_report().created => {
            return Err(Failure::Other(format!("{} holds no raftlog store", dir.display())));
        }
        Ok(store) => {
            findings.extend(recovery_findings(store.recovery_report()));
            let (lo, hi) = (store.first_index(), store.last_index() + 1);
            let progress = indicatif::ProgressBar::new(hi - lo);
            if !io::stderr().is_terminal() || hi - lo < PROGRESS_ENTRIES_MIN {
                progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            walk(&store, (lo, hi), &mut |item| {
                match item {
                    Item::Good(_) => checked += 1,
                    Item::Bad(_, error) => findings.extend(corruption(error)),
                }
                progress.inc(1);
                Ok(())
            })?;
            progress.finish_and_clear();
        }
    }
    for f in &findings {
        let indexes = f.indexes.as_ref().map(range_json).unwrap_or(Value::Null);
        out.emit(
            "finding",
            || format!("{} ({}): {} at offset {} indexes {}: {}", f.class, f.rule, f.file, f.offset.map_or("-".into(), |o| o.to_string()), f.indexes.as_ref().map_or("-".into(), |r| format!("[{}, {})", r.start, r.end)), f.detail),
            json!({ "class": f.class, "rule": f.rule, "file": f.file, "offset": f.offset, "indexes": indexes, "detail": f.detail }),
        )?;
    }
    out.emit(
        "summary",
        || format!("{} entries verified, {} findings", checked, findings.len()),
        json!({ "entries_verified": checked, "findings": findings.len() }),
    )?;
    Ok(if findings.is_empty() { Outcome::Clean } else { Outcome::ProblemsFound })
}

pub fn meta(dir: &Path, out: &mut Output) -> CommandResult {
    for (slot, decoded) in inspect::read_meta(dir)?.iter().enumerate() {
        match decoded {
            Ok(m) => out.emit(
                "meta_slot",
                || format!("slot {slot}: valid  sequence {}  store {:016x}  term {} vote {} commit {}  first index {} (prev term {})  segments from {}", m.sequence, m.store_uid, m.hard_state.term, m.hard_state.vote, m.hard_state.commit, m.first_index, m.prev_term, m.segment_id_min),
                json!({ "slot": slot, "valid": true, "sequence": m.sequence, "store_uid": m.store_uid,
                        "term": m.hard_state.term, "vote": m.hard_state.vote, "commit": m.hard_state.commit,
                        "first_index": m.first_index, "prev_term": m.prev_term, "segment_id_min": m.segment_id_min }),
            )?,
            Err(reason) => out.emit(
                "meta_slot",
                || format!("slot {slot}: invalid ({reason})"),
                json!({ "slot": slot, "valid": false, "error": reason.to_string() }),
            )?,
        }
    }
    Ok(Outcome::Clean)
}

pub fn index(dir: &Path, segment: u64, out: &mut Output) -> CommandResult {
    let file = inspect::read_index(dir, segment)?;
    let (status, count) = match &file.status {
        Ok(count) => ("valid".to_owned(), Some(*count)),
        Err(reason) => (format!("invalid: {reason}"), None),
    };
    out.emit(
        "index",
        || format!("{}: {} bytes, {status}, {} entries", file.path.display(), file.bytes, count.map_or("?".into(), |c| c.to_string())),
        json!({ "path": file.path, "bytes": file.bytes, "valid": count.is_some(), "status": status, "entries": count }),
    )?;
    for &(index, offset, term, stored_len, payload_len) in &file.entries {
        out.emit(
            "index_entry",
            || format!("{index:>10}  offset {offset:>10}  term {term:<6} stored {stored_len:>8}  payload {payload_len:>8}"),
            json!({ "index": index, "offset": offset, "term": term, "stored_len": stored_len, "payload_len": payload_len }),
        )?;
    }
    Ok(if count.is_some() { Outcome::Clean } else { Outcome::ProblemsFound })
}

pub fn snapshots(
    dir: &Path,
    group: u64,
    (verify, files): (bool, bool),
    out: &mut Output,
) -> CommandResult {
    let options = SnapshotOptions::default().group(group);
    let store = inspect::open_snapshots_read_only(dir, options)?;
    let depth = if verify { Verify::Data } else { Verify::Manifest };
    let scan = store.scan(depth)?;
    for meta in &scan.snapshots {
        let kind = if meta.partial { "partial" } else { "complete" };
        out.emit(
            "snapshot",
            || format!("index {:>10}  term {:<6} {kind:<8}  {} slots  {} files  {} bytes  configuration {} bytes  valid", meta.index, meta.term, meta.slots.len(), meta.file_count(), meta.total_bytes(), meta.configuration.len()),
            json!({ "index": meta.index, "term": meta.term, "partial": meta.partial, "slots": meta.slots.len(),
                    "files": meta.file_count(), "bytes": meta.total_bytes(), "configuration_bytes": meta.configuration.len(),
                    "valid": true, "verified_data": verify }),
        )?;
        for (slot, slot_files) in meta.slots.iter().filter(|_| files) {
            for file in slot_files {
                out.emit(
                    "snapshot_file",
                    || format!("    slot {slot:>8}  {:<40} {:>12} bytes  crc32 {:08x}", file.name, file.size, file.crc32),
                    json!({ "index": meta.index, "slot": slot, "name": file.name, "size": file.size, "crc32": file.crc32 }),
                )?;
            }
        }
    }
    for skipped in &scan.skipped {
        out.emit(
            "snapshot",
            || format!("{}: invalid ({})", skipped.path.display(), skipped.error),
            json!({ "path": skipped.path, "valid": false, "error": skipped.error.to_string() }),
        )?;
    }
    let mut in_progress: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e != "snap"))
        .collect();
    in_progress.sort();
    for path in &in_progress {
        out.emit(
            "in_progress",
            || format!("{}: in progress (never reported as a snapshot)", path.display()),
            json!({ "path": path }),
        )?;
    }
    Ok(if scan.skipped.is_empty() { Outcome::Clean } else { Outcome::ProblemsFound })
}
