//! A bounded sequence of operations chosen by the input (append, sync, truncate_suffix,
//! compact_to, reset, set_hard_state), a halt of the disk at a chosen operation and a crash
//! under a chosen seed, then the same check against the reference model as `tests/crash.rs`.
#![no_main]

#[path = "../../tests/common/crash_model.rs"]
mod crash_model;

use arbitrary::Unstructured;
use crash_model::{apply, check, Model};
use libfuzzer_sys::fuzz_target;
use raftlog::fs::SimFs;
use raftlog::{Error, LogStore, Options};

const OPS_MAX: usize = 24;

fuzz_target!(|data: &[u8]| {
    let mut input = Unstructured::new(data);
    let halt_after: u16 = input.arbitrary().unwrap_or(u16::MAX);
    let crash_seed: u64 = input.arbitrary().unwrap_or(0);
    let preallocate: bool = input.arbitrary().unwrap_or(false);
    let options = Options::default().segment_bytes_max(2048).preallocate(preallocate);
    let fs = SimFs::new();
    let store = LogStore::open_with(fs.clone(), "/fuzz", options.clone()).expect("fresh open");
    fs.halt_after(u64::from(halt_after));
    let mut model = Model::new();
    let mut inflight = None;
    for _ in 0..OPS_MAX {
        if input.is_empty() {
            break;
        }
        let op = model.generate(&mut |n| input.int_in_range(0..=n - 1).unwrap_or(0));
        model.before(&op);
        match apply(&store, &op) {
            Ok(()) => model.after_ok(&op, store.durable_index()),
            Err(Error::Io { .. } | Error::Poisoned) => {
                inflight = Some(op);
                break;
            }
            Err(e) => panic!("{op:?} refused: {e}"),
        }
    }
    drop(store);
    fs.crash(crash_seed);
    let store = LogStore::open_with(fs, "/fuzz", options).expect("open after a crash");
    if let Err(violation) = check(&store, &model, inflight.as_ref()) {
        panic!("{violation}; inflight {inflight:?}; report {:?}", store.recovery_report());
    }
});
