//! `raftlog`: inspect a store directory without changing it.
//!
//! Every command is read-only and works while a writer holds the directory: it runs the
//! library's own recovery on an in-memory overlay (`raftlog::inspect`). Output is human-readable,
//! or with `--json` one JSON object per line (`{"type": ..., "data": {...}}`, field names pinned
//! by tests). Errors go to stderr. Exit codes: 0 success (`verify`: clean), 1 `verify` found
//! problems, 2 the command could not run. A closed pipe ends the output quietly.

mod commands;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Inspect a raftlog store directory (read-only).
#[derive(Parser)]
#[command(name = "raftlog", version)]
struct Cli {
    /// One JSON object per line instead of human-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segments, hard state and totals.
    Stat { dir: PathBuf },
    /// Entries of [from, to) with index, term, kind, size and checksum status.
    Dump {
        dir: PathBuf,
        /// First index (inclusive); default the first index of the log.
        #[arg(long)]
        from: Option<u64>,
        /// Last index (exclusive); default one past the last index.
        #[arg(long)]
        to: Option<u64>,
        /// Only the entries of this segment id.
        #[arg(long)]
        segment: Option<u64>,
        /// How to print payloads.
        #[arg(long, value_enum, default_value = "none")]
        payload: PayloadFormat,
    },
    /// Checks every record and index; classifies each finding (torn tail or corruption).
    Verify { dir: PathBuf },
    /// Both slots of the meta file.
    Meta { dir: PathBuf },
    /// The index file of one segment.
    Index { dir: PathBuf, segment: u64 },
    /// The snapshots of a snapshot directory: each published one verified (manifest, file
    /// sizes, and with --verify every checksum), and any transfer or writer in progress.
    Snapshots {
        dir: PathBuf,
        /// The Raft group the snapshots must belong to.
        #[arg(long, default_value_t = 0)]
        group: u64,
        /// Also read every file and check its checksum.
        #[arg(long)]
        verify: bool,
        /// List every file of every snapshot.
        #[arg(long)]
        files: bool,
    },
}

/// How `dump` prints payloads.
#[derive(Clone, Copy, ValueEnum)]
enum PayloadFormat {
    Hex,
    Utf8,
    None,
}

/// Where a command writes: human lines or JSON lines.
pub struct Output {
    json: bool,
    out: io::BufWriter<io::StdoutLock<'static>>,
}

impl Output {
    /// One record of output: `human` for people, `data` under `type` for `--json`.
    pub fn emit(
        &mut self,
        kind: &str,
        human: impl FnOnce() -> String,
        data: serde_json::Value,
    ) -> io::Result<()> {
        if self.json {
            let line = serde_json::json!({ "type": kind, "data": data });
            writeln!(self.out, "{line}")
        } else {
            writeln!(self.out, "{}", human())
        }
    }
}

/// What a command concluded.
pub enum Outcome {
    Clean,
    ProblemsFound,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut output = Output { json: cli.json, out: io::BufWriter::new(io::stdout().lock()) };
    let result = match cli.command {
        Command::Stat { dir } => commands::stat(&dir, &mut output),
        Command::Dump { dir, from, to, segment, payload } => {
            commands::dump(&dir, (from, to, segment), payload, &mut output)
        }
        Command::Verify { dir } => commands::verify(&dir, &mut output),
        Command::Meta { dir } => commands::meta(&dir, &mut output),
        Command::Index { dir, segment } => commands::index(&dir, segment, &mut output),
        Command::Snapshots { dir, group, verify, files } => {
            commands::snapshots(&dir, group, (verify, files), &mut output)
        }
    };
    let flushed = output.out.flush().map_err(commands::Failure::from);
    match result.and_then(|outcome| flushed.map(|()| outcome)) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::ProblemsFound) => ExitCode::from(1),
        Err(commands::Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(commands::Failure::Other(message)) => {
            eprintln!("raftlog: {message}");
            ExitCode::from(2)
        }
    }
}
