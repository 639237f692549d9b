//! `SimFile`: a handle on a simulated file. Writes land in the live image and are queued as
//! unsynced; `sync_data` makes the live image durable.
//!
//! Invariants:
//! 1. A handle from before a crash fails with EIO (its generation is stale).
//! 2. Every call passes the disk's fault and halt checks (`State::enter`) first.

use std::io;

use super::{eio, set_len_of, write_into, FaultOp, SimFs, State, Unsynced};
use crate::fs::FileHandle;

/// A file of a `SimFs`.
#[derive(Debug)]
pub struct SimFile {
    pub(super) fs: SimFs,
    pub(super) inode: u64,
    pub(super) generation: u64,
}

impl SimFile {
    /// Runs `f` on this file's inode after the generation and fault checks.
    fn with_inode<T>(
        &self,
        op: FaultOp,
        f: impl FnOnce(&mut State, u64) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.fs.state();
        if state.generation != self.generation {
            return Err(eio("handle from before a crash"));
        }
        state.enter(op)?;
        f(&mut state, self.inode)
    }
}

impl FileHandle for SimFile {
    /// A copy of the live image: the plain-read stand-in for a memory map.
    type Map = Vec<u8>;

    fn map(&self) -> io::Result<Vec<u8>> {
        self.with_inode(FaultOp::Read, |state, ino| Ok(state.inodes[&ino].live.clone()))
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with_inode(FaultOp::Read, |state, ino| {
            if buf.is_empty() {
                return Ok(()); // as `FileExt::read_exact_at`, wherever the offset lies
            }
            let live = &state.inodes[&ino].live;
            let start = usize::try_from(offset).map_err(|_| eio("offset"))?;
            let end = start.checked_add(buf.len()).filter(|end| *end <= live.len());
            let end = end.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(&live[start..end]);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with_inode(FaultOp::Write, |state, ino| {
            let new_len = (offset + buf.len() as u64).max(state.inodes[&ino].live.len() as u64);
            state.check_space(ino, new_len)?;
            let inode = state.inodes.get_mut(&ino).expect("open inode exists");
            write_into(&mut inode.live, offset, buf);
            inode.unsynced.push(Unsynced::Write { offset, data: buf.to_vec() });
            Ok(())
        })
    }

    fn size(&self) -> io::Result<u64> {
        let state = self.fs.state();
        if state.generation != self.generation {
            return Err(eio("handle from before a crash"));
        }
        Ok(state.inodes[&self.inode].live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_inode(FaultOp::SetLen, |state, ino| {
            state.check_space(ino, len)?;
            let inode = state.inodes.get_mut(&ino).expect("open inode exists");
            set_len_of(&mut inode.live, len);
            inode.unsynced.push(Unsynced::SetLen(len));
            Ok(())
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.with_inode(FaultOp::Allocate, |state, ino| {
            state.check_space(ino, len)?;
            let inode = state.inodes.get_mut(&ino).expect("open inode exists");
            if (inode.live.len() as u64) < len {
                set_len_of(&mut inode.live, len);
                inode.unsynced.push(Unsynced::SetLen(len));
            }
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with_inode(FaultOp::SyncData, |state, ino| {
            let inode = state.inodes.get_mut(&ino).expect("open inode exists");
            inode.durable = inode.live.clone();
            inode.unsynced.clear();
            Ok(())
        })
    }
}
